package tasks

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The non-final index is the sorted set "{prefix}nonfinal": one member per record that
// is not final, scored with the Unix milliseconds at which the record was last known
// to have a way to finality (its creation, its last state change, or the reconciler's
// last check). Create adds a record, a state change to a final state removes it, and
// a state change of a record missing from the index (written before the index
// existed, or re-run from dropped) adds it. The worker's reconciler pages through the
// members whose score is older than its period (README, "Message states").

// NonFinalKey returns the key of the non-final index.
func (s *Store) NonFinalKey() string { return s.prefix + "nonfinal" }

// DueNonFinal returns up to limit message IDs of the non-final index last checked
// before the given time, oldest first. Re-scoring each with MarkChecked (or removing
// it with ForgetNonFinal) is what moves the next call on: the index pages itself.
func (s *Store) DueNonFinal(ctx context.Context, before time.Time, limit int) ([]string, error) {
	ids, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: s.NonFinalKey(), Start: "-inf", Stop: strconv.FormatInt(before.UnixMilli(), 10),
		ByScore: true, Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("read non-final index: %w", err)
	}
	return ids, nil
}

// MarkChecked records that message id was found to have a way to finality at the
// given time. It never adds an ID the index no longer holds (the record went final
// meanwhile).
func (s *Store) MarkChecked(ctx context.Context, id string, at time.Time) error {
	err := s.rdb.ZAddXX(ctx, s.NonFinalKey(), redis.Z{Score: float64(at.UnixMilli()), Member: id}).Err()
	if err != nil {
		return fmt.Errorf("mark %s checked: %w", id, err)
	}
	return nil
}

// forgetScript removes an ID from the non-final index when its record is final or
// gone (expired after Retention). KEYS[1] record, KEYS[2] index; ARGV[1] id.
// Returns 1 when removed.
var forgetScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if st and redis.call('HEXISTS', KEYS[1], 'final_at') == 0 then return 0 end
return redis.call('ZREM', KEYS[2], ARGV[1])
`)

// ForgetNonFinal removes message id from the non-final index if its record is final
// or gone, in one atomic step; it reports whether it did.
func (s *Store) ForgetNonFinal(ctx context.Context, id string) (bool, error) {
	n, err := forgetScript.Run(ctx, s.rdb, []string{s.Key(id), s.NonFinalKey()}, id).Int()
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, fmt.Errorf("forget %s: %w", id, err)
	}
	return n == 1, nil
}

// NonFinalCount returns the size of the non-final index.
func (s *Store) NonFinalCount(ctx context.Context) (int64, error) {
	n, err := s.rdb.ZCard(ctx, s.NonFinalKey()).Result()
	if err != nil {
		return 0, fmt.Errorf("count non-final index: %w", err)
	}
	return n, nil
}
