package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

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
	cfg, err := config.LoadFor(os.Getenv, required...)
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
	cfg, err := loadConfig()
	if err != nil {
		return config.Config{}, nil, err
	}
	rdb, err := newRedis(ctx, cfg.Redis)
	if err != nil {
		return config.Config{}, nil, err
	}
	return cfg, rdb, nil
}

// newStore returns the record store configured by cfg.
func newStore(rdb redis.UniversalClient, cfg config.Config) *tasks.Store {
	return tasks.NewStore(rdb, tasks.StoreOptions{
		Retention:    cfg.Tasks.RecordRetention,
		EventsMaxLen: cfg.Tasks.EventsMaxLen,
	})
}

// enqueuerConfig maps the settings onto the enqueuer.
func enqueuerConfig(cfg config.Config) tasks.EnqueuerConfig {
	return tasks.EnqueuerConfig{
		DefaultTTL:    cfg.Tasks.DefaultTTL,
		SMSTTL:        cfg.Tasks.SMSTTL,
		TaskRetention: cfg.Tasks.TaskRetention,
		// The retry budget is the worker's VIBERQ_MAX_RETRY (worker.Config.MaxRetry):
		// tasks carry the ceiling.
		MaxRetry: config.MaxRetryCeiling,
		TwoWay:   cfg.Tasks.TwoWay,
	}
}

func newProducer(ctx context.Context, cfg config.Config) (*producer, error) {
	rdb, err := newRedis(ctx, cfg.Redis)
	if err != nil {
		return nil, err
	}
	p := &producer{cfg: cfg, rdb: rdb, client: asynq.NewClientFromRedisClient(rdb), store: newStore(rdb, cfg)}
	p.enqueuer = tasks.NewEnqueuer(p.client, p.store, enqueuerConfig(cfg))
	return p, nil
}

func (p *producer) Close() error {
	// The asynq client does not own a client made FromRedisClient; close Redis once.
	return p.rdb.Close()
}
