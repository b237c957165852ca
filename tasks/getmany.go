package tasks

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// GetMany returns the records of ids that exist, read in one pipelined round trip.
func (s *Store) GetMany(ctx context.Context, ids []string) (map[string]Record, error) {
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, s.Key(id))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get %d records: %w", len(ids), err)
	}
	recs := make(map[string]Record, len(ids))
	for i, c := range cmds {
		if len(c.Val()) == 0 {
			continue
		}
		rec, err := recordFromHash(ids[i], c.Val())
		if err != nil {
			return nil, err
		}
		recs[ids[i]] = rec
	}
	return recs, nil
}
