package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/viberq/viberq/cmd/viberq/internal/app"
	"github.com/viberq/viberq/config"
	"github.com/viberq/viberq/tasks"
)

// producer is what the producing commands (send, api) share: the config, one Redis
// client, the record store and the enqueuer.
type producer struct {
	cfg      config.Config
	rdb      redis.UniversalClient
	client   *asynq.Client
	store    *tasks.Store
	enqueuer *tasks.Enqueuer
}

// loadConfig reads the environment; its error is the config's one line naming each
// bad variable and each of required that is unset (config.LoadFor).
func loadConfig(required ...string) (config.Config, error) {
	return loadConfigWith(nil, required...)
}

// clientConfig is loadConfig for the commands that run and exit (send, status,
// queues, resume, cancel, batch): they have no logger, so a VIBERQ_* variable that is
// not a setting (a typo) is warned about on stderr, one line each, as the worker and
// the API log it at start.
func clientConfig(required ...string) (config.Config, error) {
	cfg, err := loadConfig(required...)
	if err == nil {
		for _, line := range config.UnknownWarnings(os.Environ()) {
			fmt.Fprintln(os.Stderr, "viberq: warning: "+line)
		}
	}
	return cfg, err
}

// settingFlag is a flag that stands for a setting: its value, when given, is read in
// place of the variable's, by the setting's own parser and bounds (config owns them),
// and a problem with it names the flag.
type settingFlag struct {
	flag  string // e.g. "--rate"
	value string // "" when the flag was not given
}

// loadConfigWith is loadConfig with flags in place of their variables (keyed by the
// variable's name).
func loadConfigWith(flags map[string]settingFlag, required ...string) (config.Config, error) {
	getenv := func(name string) string {
		if f, ok := flags[name]; ok && f.value != "" {
			return f.value
		}
		return os.Getenv(name)
	}
	cfg, err := config.LoadFor(getenv, required...)
	var ce *config.Error
	if errors.As(err, &ce) {
		for v, f := range flags {
			if f.value != "" {
				ce.NameFlag(v, f.flag)
			}
		}
	}
	if err != nil {
		// A misspelt variable is often why a setting is missing: say so on the line.
		if unk := config.UnknownWarnings(os.Environ()); len(unk) > 0 {
			return config.Config{}, fmt.Errorf("config: %w; %s", err, strings.Join(unk, "; "))
		}
		return config.Config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// connect loads the config and opens Redis: the start of every command that only
// reads records or administers queues. The caller closes the client.
func connect(ctx context.Context) (config.Config, redis.UniversalClient, error) {
	cfg, err := clientConfig()
	if err != nil {
		return config.Config{}, nil, err
	}
	rdb, err := newRedis(ctx, cfg.Redis)
	if err != nil {
		return config.Config{}, nil, err
	}
	return cfg, rdb, nil
}

// newRedis is app.NewRedis for the commands, with the passwords registered first so
// that go-redis's log lines never show them (redisLog).
func newRedis(ctx context.Context, cfg config.Redis) (redis.UniversalClient, error) {
	redisLog.hide(cfg.Password.Reveal(), cfg.SentinelPassword.Reveal())
	return app.NewRedis(ctx, cfg)
}

func newProducer(ctx context.Context, cfg config.Config) (*producer, error) {
	rdb, err := newRedis(ctx, cfg.Redis)
	if err != nil {
		return nil, err
	}
	p := &producer{cfg: cfg, rdb: rdb, client: asynq.NewClientFromRedisClient(rdb), store: app.NewStore(rdb, cfg)}
	p.enqueuer = tasks.NewEnqueuer(p.client, p.store, app.EnqueuerConfig(cfg))
	return p, nil
}

func (p *producer) Close() error {
	// The asynq client does not own a client made FromRedisClient; close Redis once.
	return p.rdb.Close()
}
