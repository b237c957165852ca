package dtsim

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
)

func TestTimeline(t *testing.T) {
	t.Parallel()
	clock := newClock()
	cfg := instant(t)
	cfg.Now = clock.Now
	cfg.PendingAfter = time.Second
	cfg.DeliverMin, cfg.DeliverMax = 5*time.Second, 5*time.Second
	a := start(t, cfg)
	id := a.sendOK(validMsg())

	steps := []struct {
		advance time.Duration
		want    string
		final   bool
	}{
		{0, `{"message_id":%d,"status":0}`, false},
		{999 * time.Millisecond, `{"message_id":%d,"status":0}`, false},
		{time.Millisecond, `{"message_id":%d,"status":5}`, false},
		{3999 * time.Millisecond, `{"message_id":%d,"status":5}`, false},
		{time.Millisecond, `{"message_id":%d,"status":1}`, true},
		{time.Hour, `{"message_id":%d,"status":1}`, true},
	}
	for i, st := range steps {
		clock.Advance(st.advance)
		require.Equal(t, fmt.Sprintf(st.want, id), a.status(id).body, "step %d", i)
		_, final, ok := a.sim.MessageStatus(provider.MessageID(id))
		require.True(t, ok)
		require.Equal(t, st.final, final, "step %d", i)
	}
	s := a.sim.Stats()
	require.Equal(t, map[string]int64{OutcomeDeliveredViber: 1}, s.Finals)
	require.Equal(t, int64(len(steps)), s.StatusCalls)
	require.Equal(t, int64(len(steps)), s.MaxStatusCallsPerMessage)
}

func TestRandomDelays(t *testing.T) {
	t.Parallel()
	clock := newClock()
	cfg := instant(t)
	cfg.Now = clock.Now
	cfg.DeliverMin, cfg.DeliverMax = time.Second, 6*time.Second
	a := start(t, cfg)
	for range 200 {
		a.sendOK(validMsg())
	}
	clock.Advance(999 * time.Millisecond)
	require.Equal(t, int64(200), a.sim.Stats().Pending)
	clock.Advance(2500 * time.Millisecond)
	mid := a.sim.Stats()
	require.Positive(t, mid.Pending)
	require.Positive(t, mid.Finals[OutcomeDeliveredViber])
	clock.Advance(2501 * time.Millisecond)
	end := a.sim.Stats()
	require.Zero(t, end.Pending)
	require.Equal(t, int64(200), end.Finals[OutcomeDeliveredViber])
}

func TestViberFailureAndSMSLeg(t *testing.T) {
	t.Parallel()
	clock := newClock()
	cfg := instant(t)
	cfg.Now = clock.Now
	cfg.DeliverMin, cfg.DeliverMax = 2*time.Second, 2*time.Second
	cfg.ViberFailShare = 1
	cfg.SMSDelayMin, cfg.SMSDelayMax = 4*time.Second, 4*time.Second
	a := start(t, cfg)
	withSMS := a.sendOK(smsMsg())
	plain := a.sendOK(validMsg())
	smsID := cfg.withDefaults().FirstSMSMessageID

	steps := []struct {
		advance   time.Duration
		sms, only string
	}{
		{1999 * time.Millisecond, `{"message_id":%d,"status":5}`, `{"message_id":%d,"status":5}`},
		{time.Millisecond, `{"message_id":%d,"status":4,"sms_message_id":%d,"sms_message_status":6}`, `{"message_id":%d,"status":4}`},
		{1999 * time.Millisecond, `{"message_id":%d,"status":4,"sms_message_id":%d,"sms_message_status":6}`, `{"message_id":%d,"status":4}`},
		{time.Millisecond, `{"message_id":%d,"status":4,"sms_message_id":%d,"sms_message_status":1}`, `{"message_id":%d,"status":4}`},
		{1999 * time.Millisecond, `{"message_id":%d,"status":4,"sms_message_id":%d,"sms_message_status":1}`, `{"message_id":%d,"status":4}`},
		{time.Millisecond, `{"message_id":%d,"status":4,"sms_message_id":%d,"sms_message_status":2}`, `{"message_id":%d,"status":4}`},
	}
	for i, st := range steps {
		clock.Advance(st.advance)
		want := fmt.Sprintf(st.sms, withSMS, smsID)
		if st.sms == `{"message_id":%d,"status":5}` {
			want = fmt.Sprintf(st.sms, withSMS)
		}
		require.Equal(t, want, a.status(withSMS).body, "step %d", i)
		require.Equal(t, fmt.Sprintf(st.only, plain), a.status(plain).body, "step %d", i)
	}
	s := a.sim.Stats()
	require.Equal(t, map[string]int64{OutcomeDeliveredSMS: 1, OutcomeUndelivered: 1}, s.Finals)
	require.Equal(t, map[string]int64{"undelivered": 2}, s.FinalViber)
	require.Equal(t, map[string]int64{"delivered": 1}, s.FinalSMS)

	res, final, ok := a.sim.MessageStatus(provider.MessageID(withSMS))
	require.True(t, ok)
	require.True(t, final)
	require.Equal(t, provider.OutcomeDeliveredSMS, res.Outcome(true))
}

func TestSMSLegFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name             string
		expired, undeliv float64
		want             provider.SMSStatus
	}{
		{"Expired", 1, 0, provider.SMSExpired},
		{"Undeliverable", 0, 1, provider.SMSUndeliverable},
		{"Delivered", 0, 0, provider.SMSDelivered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := instant(t)
			cfg.ViberFailShare = 1
			cfg.SMSExpiredShare, cfg.SMSUndeliverableShare = tc.expired, tc.undeliv
			a := start(t, cfg)
			id := a.sendOK(smsMsg())
			got := a.statusOf(id)
			require.Equal(t, fmt.Sprint(int(tc.want)), fmt.Sprint(got["sms_message_status"]))
			res, final, _ := a.sim.MessageStatus(provider.MessageID(id))
			require.True(t, final)
			want := provider.OutcomeUndelivered
			if tc.want == provider.SMSDelivered {
				want = provider.OutcomeDeliveredSMS
			}
			require.Equal(t, want, res.Outcome(true))
		})
	}
}

func TestSMSFieldsNull(t *testing.T) {
	t.Parallel()
	cfg := instant(t)
	cfg.SMSFieldsNull = true
	a := start(t, cfg)
	withSMS := a.sendOK(smsMsg())
	plain := a.sendOK(validMsg())
	require.Equal(t, fmt.Sprintf(`{"message_id":%d,"status":1,"sms_message_id":null,"sms_message_status":null}`, withSMS), a.status(withSMS).body)
	require.Equal(t, fmt.Sprintf(`{"message_id":%d,"status":1}`, plain), a.status(plain).body)
}

func TestViberFailCodes(t *testing.T) {
	t.Parallel()
	cfg := instant(t)
	cfg.ViberFailShare = 1
	cfg.ViberFailCodes = []provider.ViberStatus{provider.ViberError, provider.ViberRejected}
	a := start(t, cfg)
	seen := map[string]bool{}
	for range 40 {
		st := a.statusOf(a.sendOK(validMsg()))
		seen[fmt.Sprint(st["status"])] = true
	}
	require.Equal(t, map[string]bool{"2": true, "3": true}, seen)
}

func TestValidityCutoff(t *testing.T) {
	t.Parallel()
	clock := newClock()
	cfg := instant(t)
	cfg.Now = clock.Now
	cfg.DeliverMin, cfg.DeliverMax = 50*time.Second, 50*time.Second
	cfg.Validity = 30 * time.Second // used when validity_period is absent
	a := start(t, cfg)

	ttl40 := validMsg()
	ttl40.ValidityPeriod = 40
	cut := a.sendOK(ttl40)
	ttl40sms := smsMsg()
	ttl40sms.ValidityPeriod = 40
	cutSMS := a.sendOK(ttl40sms)
	ttl60 := validMsg()
	ttl60.ValidityPeriod = 60
	inTime := a.sendOK(ttl60)
	noTTL := a.sendOK(validMsg())

	clock.Advance(29999 * time.Millisecond)
	require.Equal(t, "5", fmt.Sprint(a.statusOf(noTTL)["status"]))
	clock.Advance(time.Millisecond)
	require.Equal(t, "4", fmt.Sprint(a.statusOf(noTTL)["status"]), "default validity")

	clock.Advance(9999 * time.Millisecond) // 39.999 s
	require.Equal(t, "5", fmt.Sprint(a.statusOf(cut)["status"]))
	clock.Advance(time.Millisecond) // 40 s: nothing is delivered after validity_period
	require.Equal(t, fmt.Sprintf(`{"message_id":%d,"status":4}`, cut), a.status(cut).body)
	st := a.statusOf(cutSMS)
	require.Equal(t, "4", fmt.Sprint(st["status"]))
	require.Equal(t, "2", fmt.Sprint(st["sms_message_status"]), "the SMS leg follows the Viber deadline")

	clock.Advance(10 * time.Second) // 50 s
	require.Equal(t, "1", fmt.Sprint(a.statusOf(inTime)["status"]))
	s := a.sim.Stats()
	require.Equal(t, int64(3), s.ExpiredByValidity)
	require.Equal(t, map[string]int64{OutcomeDeliveredViber: 1, OutcomeDeliveredSMS: 1, OutcomeUndelivered: 2}, s.Finals)
}

func TestStatusWindow(t *testing.T) {
	t.Parallel()
	clock := newClock()
	cfg := instant(t)
	cfg.Now = clock.Now
	cfg.StatusWindow = time.Hour
	a := start(t, cfg)
	id := a.sendOK(validMsg())
	clock.Advance(time.Hour)
	require.Equal(t, 200, a.status(id).status)
	clock.Advance(time.Millisecond)
	r := a.status(id)
	require.Equal(t, 400, r.status)
	require.Contains(t, r.body, "Invalid Parameter: message_id")
}

func TestDeterministicPlans(t *testing.T) {
	t.Parallel()
	run := func(seed int64) []string {
		clock := newClock()
		cfg := instant(t)
		cfg.Now = clock.Now
		cfg.Seed = seed
		cfg.DeliverMin, cfg.DeliverMax = time.Second, 6*time.Second
		cfg.ViberFailShare = 0.5
		cfg.SMSDelayMin, cfg.SMSDelayMax = time.Second, 3*time.Second
		cfg.SMSExpiredShare, cfg.SMSUndeliverableShare = 0.2, 0.2
		a := start(t, cfg)
		var ids []int64
		for range 60 {
			ids = append(ids, a.sendOK(smsMsg()))
		}
		var out []string
		for _, at := range []time.Duration{3 * time.Second, 7 * time.Second, 20 * time.Second} {
			clock.Advance(at)
			for _, id := range ids {
				res, final, _ := a.sim.MessageStatus(provider.MessageID(id))
				sms := "-"
				if res.SMSStatus != nil {
					sms = fmt.Sprint(*res.SMSStatus)
				}
				out = append(out, fmt.Sprint(res.Status, sms, final))
			}
		}
		return out
	}
	a1, a2, b := run(1), run(1), run(2)
	require.Equal(t, a1, a2)
	require.NotEqual(t, a1, b)
}

func TestPlanStatistics(t *testing.T) {
	t.Parallel()
	clock := newClock()
	cfg, err := ProfileConfig(ProfileRealistic)
	require.NoError(t, err)
	cfg.Key, cfg.Seed, cfg.Now = testKey, 3, clock.Now
	cfg.RatePerSec = 0
	sim := New(cfg) // in process: 2000 sends without sockets
	defer sim.Close()
	const n = 2000
	for i := range n {
		m := smsMsg()
		if i%2 == 0 {
			m = validMsg()
		}
		require.Contains(t, httptestDo(sim, wire(t, m)), "message_id")
	}
	clock.Advance(11 * time.Second) // 6 s Viber + 5 s SMS: everything is final
	s := sim.Stats()
	require.Zero(t, s.Pending)
	failed := s.FinalViber["undelivered"]
	require.InDelta(t, 0.10, float64(failed)/n, 0.03, "~10%% undelivered in Viber: %v", s.FinalViber)
	require.Equal(t, int64(n), s.Finals[OutcomeDeliveredViber]+s.Finals[OutcomeDeliveredSMS]+s.Finals[OutcomeUndelivered])
	require.Positive(t, s.Finals[OutcomeDeliveredSMS])
	require.Greater(t, s.FinalSMS["delivered"], s.FinalSMS["expired"]+s.FinalSMS["undeliverable"])
}
