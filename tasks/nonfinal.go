package tasks

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/viberq/viberq/provider"
)

// The non-final index is the sorted set "{prefix}nonfinal": one member per record that
// is not final, scored with the Unix milliseconds at which the record was last known
// to have a way to finality (its creation, or the reconciler's last check); and in
// front of it the list "{prefix}nonfinal:new" of the records created since it was
// last sorted in. Create appends a record's ID to the list (an RPUSH: a lone
// producer's enqueue pays for no sorted-set insert, BENCHMARKS.md, row 3a).
// DueNonFinal first sorts the list in: every record on it that is still not final
// joins the sorted set, scored with its created_at, and the rest (finished
// meanwhile, or gone) are dropped, so the sorted set never sees them. A state change
// to a final state removes a record from the sorted set, and a re-run (a final
// record made non-final again) adds it back. The worker's reconciler pages through
// the members whose score is older than its period (README, "Message states").

// NonFinalKey returns the key of the non-final index (the sorted set).
func (s *Store) NonFinalKey() string { return s.prefix + "nonfinal" }

// NonFinalNewKey returns the key of the list of records created and not yet sorted
// into the non-final index.
func (s *Store) NonFinalNewKey() string { return s.prefix + "nonfinal:new" }

// unfinishedLua defines unfinished(key): the created_at (Unix ms, 0 when missing) of
// the record at key when it exists and is not final, else false. The one rule of
// what belongs in the non-final index, for the scripts that add to it or drop from it.
const unfinishedLua = `
local function unfinished(key)
  local r = redis.call('HMGET', key, 'state', 'final_at', 'created_at')
  if r[1] and not r[2] then return tonumber(r[3]) or 0 end
  return false
end
`

// sortInBatch is how many new records one run of sortInScript takes from the list:
// about 1.2 ms of Redis (BENCHMARKS.md, "4 December 2026, evening: where a lone
// enqueue's time goes, and a cheaper index entry").
const sortInBatch = 500

// sortInScript moves up to ARGV[2] IDs from the head of the new-records list KEYS[1]
// into the non-final index KEYS[2]: those whose record (key ARGV[1] .. id) is
// unfinished join it (NX), scored with their created_at; the others are dropped.
// Returns how many IDs it took from the list.
var sortInScript = redis.NewScript(unfinishedLua + `
local ids = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
for _, id in ipairs(ids) do
  local since = unfinished(ARGV[1] .. id)
  if since then redis.call('ZADD', KEYS[2], 'NX', since, id) end
end
if #ids > 0 then redis.call('LTRIM', KEYS[1], #ids, -1) end
return #ids
`)

// sortIn sorts the records created so far into the non-final index: as many as the
// list held when it started (producers appending meanwhile cannot keep it going), in
// batches of sortInBatch, each one atomic step.
func (s *Store) sortIn(ctx context.Context) error {
	n, err := s.rdb.LLen(ctx, s.NonFinalNewKey()).Result()
	if err != nil {
		return fmt.Errorf("sort new records into the non-final index: %w", err)
	}
	keys := []string{s.NonFinalNewKey(), s.NonFinalKey()}
	for done := int64(0); done < n; {
		k, err := sortInScript.Run(ctx, s.rdb, keys, s.Key(""), min(sortInBatch, n-done)).Int64()
		if err != nil {
			return fmt.Errorf("sort new records into the non-final index: %w", err)
		}
		if k == 0 {
			break
		}
		done += k
	}
	return nil
}

// DueNonFinal sorts the records created since the last sort-in into the non-final
// index, then returns up to limit message IDs of the index last checked before the
// given time, oldest first. Re-scoring each with MarkChecked (or removing it with
// ForgetNonFinal) is what moves the next call on: the index pages itself.
func (s *Store) DueNonFinal(ctx context.Context, before time.Time, limit int) ([]string, error) {
	if err := s.sortIn(ctx); err != nil {
		return nil, err
	}
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
		return fmt.Errorf("mark %s checked: %w", provider.MaskID(id), err)
	}
	return nil
}

// forgetScript removes an ID from the non-final index when its record is final or
// gone (expired after Retention). KEYS[1] record, KEYS[2] index; ARGV[1] id.
// Returns 1 when removed.
var forgetScript = redis.NewScript(unfinishedLua + `
if unfinished(KEYS[1]) then return 0 end
return redis.call('ZREM', KEYS[2], ARGV[1])
`)

// ForgetNonFinal removes message id from the non-final index if its record is final
// or gone, in one atomic step; it reports whether it did.
func (s *Store) ForgetNonFinal(ctx context.Context, id string) (bool, error) {
	n, err := forgetScript.Run(ctx, s.rdb, []string{s.Key(id), s.NonFinalKey()}, id).Int()
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, fmt.Errorf("forget %s: %w", provider.MaskID(id), err)
	}
	return n == 1, nil
}

// NonFinalCount returns the size of the non-final index, plus the records created
// since it was last sorted in (some of which may be final already): right after a
// DueNonFinal, about the number of records not final.
func (s *Store) NonFinalCount(ctx context.Context) (int64, error) {
	var zc, lc *redis.IntCmd
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		zc = p.ZCard(ctx, s.NonFinalKey())
		lc = p.LLen(ctx, s.NonFinalNewKey())
		return nil
	}); err != nil {
		return 0, fmt.Errorf("count non-final index: %w", err)
	}
	return zc.Val() + lc.Val(), nil
}
