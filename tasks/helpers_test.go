package tasks_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
	"github.com/viberq/viberq/tasks/redistest"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now().UTC().Truncate(time.Millisecond)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type testBundle struct {
	rdb    *redis.Client
	store  *tasks.Store
	client *asynq.Client
	insp   *asynq.Inspector
	enq    *tasks.Enqueuer
	clock  *clock
}

// setup returns fresh fixtures on miniredis, or on a reserved real Redis database when
// VIBERQ_TEST_REDIS_URL is set.
func setup(t *testing.T, cfg tasks.EnqueuerConfig) *testBundle {
	t.Helper()
	rdb := redistest.New(t)
	clk := newClock()
	store := tasks.NewStore(rdb, tasks.StoreOptions{Now: clk.Now})
	client := asynq.NewClientFromRedisClient(rdb)
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspectorFromRedisClient(rdb)
	if cfg.Now == nil {
		cfg.Now = clk.Now
	}
	return &testBundle{
		rdb:    rdb,
		store:  store,
		client: client,
		insp:   insp,
		enq:    tasks.NewEnqueuer(client, store, cfg),
		clock:  clk,
	}
}

// transactional returns a valid Viber + SMS message.
func transactional() provider.Message {
	return provider.Message{
		SourceAddr:      "Shop",
		DestinationAddr: "380501234567",
		MessageType:     provider.TypeText,
		Text:            "Your code is 1234",
		TextSMS:         "Code 1234",
		SourceType:      provider.SourceTransactional,
	}
}

// promotional returns a valid text + image + button message.
func promotional() provider.Message {
	return provider.Message{
		SourceAddr:      "Shop",
		DestinationAddr: "380671112233",
		MessageType:     provider.TypeTextImageButton,
		Text:            "Sale today",
		Image:           "https://example.com/sale.png",
		ButtonCaption:   "Shop now",
		ButtonAction:    "https://example.com/sale",
		SourceType:      provider.SourcePromotional,
	}
}

// deadEnqueuer returns an Enqueuer whose Redis is down (tasks.DeadRedis).
func deadEnqueuer(t *testing.T) *tasks.Enqueuer {
	t.Helper()
	rdb := tasks.DeadRedis(t)
	client := asynq.NewClientFromRedisClient(rdb)
	t.Cleanup(func() { _ = client.Close() })
	return tasks.NewEnqueuer(client, tasks.NewStore(rdb, tasks.StoreOptions{}), tasks.EnqueuerConfig{})
}

// requireNothingWritten fails unless Redis holds no key but redistest's lock (which
// a real Redis database holds, redistest.LockKey).
func requireNothingWritten(t *testing.T, b *testBundle) {
	t.Helper()
	keys, err := b.rdb.Keys(context.Background(), "*").Result()
	require.NoError(t, err)
	keys = slices.DeleteFunc(keys, func(k string) bool {
		for db := range 16 {
			if k == redistest.LockKey(db) {
				return true
			}
		}
		return false
	})
	require.Empty(t, keys)
}
