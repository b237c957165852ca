package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/viberq/viberq/config"
	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/provider/dtsim"
	"github.com/viberq/viberq/tasks"
)

// ---- row 8: a promotional backlog in front of transactional messages ----

// benchBacklog queues a backlog of promotional messages at the send limit, then
// enqueues transactional OTPs while it drains, and measures the OTPs' send latency
// (enqueue → accepted) and every message's first-poll lag (the poll that settled it,
// against its due time: accepted + first poll; the instant simulator delivers at
// once, so the first poll is the final one).
func benchBacklog(ctx context.Context, b *bench) ([]benchResult, error) {
	const (
		limit, procs = 50, 2
		first        = 3 * time.Second
	)
	nPromo, nOTP := b.pick(3000, 600), b.pick(40, 10)
	sim, err := startSim(b.simConfig(dtsim.ProfileInstant))
	if err != nil {
		return nil, err
	}
	defer sim.close()
	enq, store, _, err := b.producer(sim.base)
	if err != nil {
		return nil, err
	}
	promo := func(i int) (provider.Message, string) {
		m := benchMessage(i)
		m.SourceType = provider.SourcePromotional
		return m, ""
	}
	promoIDs, _, err := enqueueMessages(ctx, enq, nPromo, promo)
	if err != nil {
		return nil, err
	}
	env := b.workerEnv(sim.base, map[string]string{
		config.EnvRateLimit:       strconv.Itoa(limit),
		config.EnvStatusRateLimit: strconv.Itoa(limit),
		config.EnvPollFirst:       first.String(),
		config.EnvPollJitter:      "0",
	})
	_, stop, err := b.startWorkers(procs, env)
	defer stop()
	if err != nil {
		return nil, err
	}
	if err := sim.tap.waitSends(ctx, int64(nPromo/10), time.Minute); err != nil {
		return nil, err
	}
	otpIDs := make([]string, 0, nOTP)
	for i := range nOTP {
		res, err := enq.Enqueue(ctx, tasks.EnqueueRequest{Message: benchMessage(nPromo + i)})
		if err != nil {
			return nil, err
		}
		otpIDs = append(otpIDs, res.ID)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	backlogLeft := nPromo - int(sim.sim.Stats().Accepted) + nOTP
	all := append(append([]string(nil), promoIDs...), otpIDs...)
	recs := make([]tasks.Record, len(all))
	for deadline := time.Now().Add(5 * time.Minute); ; {
		done := 0
		for i, id := range all {
			if recs[i].State.Final() {
				done++
				continue
			}
			if r, err := store.Get(ctx, id); err == nil {
				recs[i] = r
				if r.State.Final() {
					done++
				}
			}
		}
		if done == len(all) {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d messages final within 5 minutes", done, len(all))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	var sendLat, lagOTP, lagPromo []time.Duration
	for i, r := range recs {
		if r.AcceptedAt.IsZero() || r.FinalAt.IsZero() {
			return nil, fmt.Errorf("message %s ended %s without being accepted", r.ID, r.State)
		}
		lag := r.FinalAt.Sub(r.AcceptedAt.Add(first))
		if i >= nPromo {
			sendLat = append(sendLat, r.AcceptedAt.Sub(r.CreatedAt))
			lagOTP = append(lagOTP, lag)
		} else {
			lagPromo = append(lagPromo, lag)
		}
	}
	lagAll := append(append([]time.Duration(nil), lagOTP...), lagPromo...)
	lat99, lag99 := percentile(sendLat, 99), percentile(lagAll, 99)
	how := fmt.Sprintf("%d promotional messages queued first; %d worker processes (re-executed `viberq worker`, VIBERQ_RATE_LIMIT=%d, "+
		"VIBERQ_STATUS_RATE_LIMIT=%d, first poll %s without jitter, other settings default: %d send and %d poll slots each); from the "+
		"moment %d were sent, %d transactional messages enqueued one per 500 ms (still %d messages queued after the last). "+
		"Send latency: record accepted_at - created_at of the transactional messages (p50 %s, max %s). First-poll lag: final_at - "+
		"(accepted_at + %s) of every message (instant simulator: the first poll settles it); transactional p99 %s, promotional p99 %s.",
		nPromo, procs, limit, limit, first, config.DefaultConcurrency, config.DefaultPollConcurrency, nPromo/10, nOTP, backlogLeft,
		fmtMS(percentile(sendLat, 50)), fmtMS(percentile(sendLat, 100)), first, fmtMS(percentile(lagOTP, 99)), fmtMS(percentile(lagPromo, 99)))
	return []benchResult{{
		Row: "8a", What: "backlog: transactional send latency", Viberq: "p99 " + fmtMS(lat99), Value: "p99 " + fmtMS(lat99),
		Target: "p99 ≤ 2 s", Result: passFail(lat99 <= 2*time.Second), ViberqNum: float64(lat99) / 1e6, ValueNum: float64(lat99) / 1e6, How: how,
	}, {
		Row: "8b", What: "backlog: first-poll lag past due", Viberq: "p99 " + fmtMS(lag99), Value: "p99 " + fmtMS(lag99),
		Target: "p99 ≤ 5 s", Result: passFail(lag99 <= 5*time.Second), ViberqNum: float64(lag99) / 1e6, ValueNum: float64(lag99) / 1e6,
	}}, nil
}
