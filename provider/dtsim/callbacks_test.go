package dtsim

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
)

const waitFor, tick = 5 * time.Second, 5 * time.Millisecond

func TestCallbackAtFinalState(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	cfg := instant(t)
	cfg.PendingAfter = 10 * time.Millisecond
	cfg.DeliverMin, cfg.DeliverMax = 30*time.Millisecond, 30*time.Millisecond
	a := start(t, cfg)
	m := validMsg()
	m.CallbackURL = rc.srv.URL + "/cb"
	id := a.sendOK(m)
	a.sendOK(validMsg()) // no callback_url: no callback

	require.Eventually(t, func() bool { return len(rc.got()) == 1 }, waitFor, tick)
	require.Equal(t, fmt.Sprintf(`{"message_id":%d,"status":1}`, id), rc.got()[0])

	// The provider's own parser reads it.
	cb, err := provider.ParseStatusCallback("application/json", []byte(rc.got()[0]))
	require.NoError(t, err)
	require.Equal(t, provider.MessageID(id), cb.MessageID)
	require.Equal(t, provider.ViberDelivered, cb.Status)

	require.Eventually(t, func() bool { return a.sim.Stats().Callbacks.Sent == 1 }, waitFor, tick)
	st := a.sim.Stats().Callbacks
	require.Equal(t, PushStats{Scheduled: 1, Sent: 1}, st)
}

func TestCallbackIntermediate(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	cfg := instant(t)
	cfg.IDStyle = IDString
	cfg.CallbackIntermediate = true
	cfg.PendingAfter = 10 * time.Millisecond
	cfg.DeliverMin, cfg.DeliverMax = 30*time.Millisecond, 30*time.Millisecond
	cfg.ViberFailShare = 1
	cfg.SMSDelayMin, cfg.SMSDelayMax = 40*time.Millisecond, 40*time.Millisecond
	cfg.CallbackWorkers = 1 // one worker: posts arrive in due order
	a := start(t, cfg)
	m := smsMsg()
	m.CallbackURL = rc.srv.URL
	id := a.sendOK(m)
	sms := cfg.withDefaults().FirstSMSMessageID

	want := []string{
		fmt.Sprintf(`{"message_id":"%d","status":5}`, id),
		fmt.Sprintf(`{"message_id":"%d","status":4,"sms_message_id":"%d","sms_message_status":6}`, id, sms),
		fmt.Sprintf(`{"message_id":"%d","status":4,"sms_message_id":"%d","sms_message_status":1}`, id, sms),
		fmt.Sprintf(`{"message_id":"%d","status":4,"sms_message_id":"%d","sms_message_status":2}`, id, sms),
	}
	require.Eventually(t, func() bool { return len(rc.got()) == len(want) }, waitFor, tick)
	require.Equal(t, want, rc.got())
}

func TestCallbackRetries(t *testing.T) {
	t.Parallel()
	t.Run("SucceedsAfterFailures", func(t *testing.T) {
		t.Parallel()
		rc := newReceiver(t, 500, 503)
		cfg := instant(t)
		cfg.CallbackRetries = 2
		cfg.CallbackRetryDelay = 5 * time.Millisecond
		a := start(t, cfg)
		m := validMsg()
		m.CallbackURL = rc.srv.URL
		a.sendOK(m)
		require.Eventually(t, func() bool { return a.sim.Stats().Callbacks.Sent == 1 }, waitFor, tick)
		require.Len(t, rc.got(), 3)
		require.Equal(t, PushStats{Scheduled: 1, Sent: 1, Retried: 2}, a.sim.Stats().Callbacks)
	})
	t.Run("GivesUp", func(t *testing.T) {
		t.Parallel()
		rc := newReceiver(t, 500, 500, 500, 500)
		cfg := instant(t)
		cfg.CallbackRetries = 1
		cfg.CallbackRetryDelay = 5 * time.Millisecond
		a := start(t, cfg)
		m := validMsg()
		m.CallbackURL = rc.srv.URL
		a.sendOK(m)
		require.Eventually(t, func() bool { return a.sim.Stats().Callbacks.Failed == 1 }, waitFor, tick)
		require.Len(t, rc.got(), 2)
		require.Equal(t, PushStats{Scheduled: 1, Failed: 1, Retried: 1}, a.sim.Stats().Callbacks)
	})
	t.Run("Unreachable", func(t *testing.T) {
		t.Parallel()
		rc := newReceiver(t)
		url := rc.srv.URL
		rc.srv.Close() // nothing listens there any more
		cfg := instant(t)
		a := start(t, cfg)
		m := validMsg()
		m.CallbackURL = url
		a.sendOK(m)
		require.Eventually(t, func() bool { return a.sim.Stats().Callbacks.Failed == 1 }, waitFor, tick)
	})
}

func TestCallbackPendingLimit(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	clock := newClock()
	cfg := instant(t)
	cfg.Now = clock.Now
	cfg.DeliverMin, cfg.DeliverMax = time.Hour, time.Hour // never due while the test runs
	cfg.MaxPendingCallbacks = 3
	a := start(t, cfg)
	m := validMsg()
	m.CallbackURL = rc.srv.URL
	for range 5 {
		a.sendOK(m)
	}
	st := a.sim.Stats().Callbacks
	require.Equal(t, PushStats{Scheduled: 3, Dropped: 2, Pending: 3}, st)

	// A test clock that jumps is noticed without new traffic.
	clock.Advance(time.Hour)
	require.Eventually(t, func() bool { return len(rc.got()) == 3 }, waitFor, tick)

	a.sendOK(m)
	a.sim.Reset()
	require.Zero(t, a.sim.Stats().Callbacks.Pending)
}

func TestTwoWayReplies(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	cfg := instant(t)
	cfg.ReplyURL = rc.srv.URL + "/inbound"
	cfg.ReplyShare = 1
	cfg.ReplyDelayMin, cfg.ReplyDelayMax = 5*time.Millisecond, 20*time.Millisecond
	a := start(t, cfg)

	twoWay := validMsg()
	twoWay.MessageType = provider.TypeTwoWayText
	twoWay.SourceType = provider.SourcePromotional
	id := a.sendOK(twoWay)
	a.sendOK(validMsg()) // 106: no reply

	require.Eventually(t, func() bool { return len(rc.got()) == 1 }, waitFor, tick)
	body := rc.got()[0]
	var raw struct {
		MessageToken json.Number `json:"message_token"`
		PhoneNumber  string      `json:"phone_number"`
		Time         int64       `json:"time"`
		Message      struct {
			Text         string `json:"text"`
			TrackingData string `json:"tracking_data"`
		} `json:"message"`
	}
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&raw))
	require.Equal(t, twoWay.DestinationAddr, raw.PhoneNumber)
	require.Equal(t, fmt.Sprintf("tracking_id:%d", id), raw.Message.TrackingData)
	require.NotEmpty(t, raw.Message.Text)
	require.Greater(t, raw.Time, int64(1e12), "milliseconds")
	tok, err := raw.MessageToken.Int64()
	require.NoError(t, err)
	require.Greater(t, tok, int64(1)<<53, "tokens beyond float64 precision")

	// The provider's parser reads it back.
	require.True(t, provider.IsReply([]byte(body)))
	rep, err := provider.ParseReply("application/json", []byte(body))
	require.NoError(t, err)
	require.Equal(t, fmt.Sprint(id), rep.TrackingID)
	require.Equal(t, raw.MessageToken.String(), rep.MessageToken)

	require.Eventually(t, func() bool { return a.sim.Stats().Replies.Sent == 1 }, waitFor, tick)
}

func TestNoReplyWhenUndelivered(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	cfg := instant(t)
	cfg.ReplyURL, cfg.ReplyShare, cfg.ViberFailShare = rc.srv.URL, 1, 1
	a := start(t, cfg)
	m := validMsg()
	m.MessageType, m.SourceType = provider.TypeTwoWayText, provider.SourcePromotional
	a.sendOK(m)
	require.Equal(t, PushStats{}, a.sim.Stats().Replies)
}

// TestCloseStopsDispatcher: a job scheduled after Close is never POSTed. Close
// returns once the dispatcher's goroutines have ended (stop waits for them), so
// nothing could POST it; the test waits as long as a running dispatcher would need
// to deliver it (it takes a due job at once when poked, and looks at its heap at
// least every maxDispatchWait anyway; the POST to a local receiver takes
// milliseconds) and sees no POST. The job scheduled before Close shows that the same
// job is POSTed by a running dispatcher, so the silence after Close is not that of
// a bad URL.
func TestCloseStopsDispatcher(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t)
	s := New(instant(t))
	s.cb.schedule(&job{due: time.Now(), url: rc.srv.URL, body: []byte(`{"before":"close"}`)})
	require.Eventually(t, func() bool { return len(rc.got()) == 1 }, waitFor, tick, "a running dispatcher POSTs a due job")
	s.Close()
	s.Close() // idempotent
	s.cb.schedule(&job{due: time.Now(), url: rc.srv.URL, body: []byte(`{"after":"close"}`)})
	require.Never(t, func() bool { return len(rc.got()) > 1 }, 4*maxDispatchWait, tick, "a job scheduled after Close was POSTed")
	require.Equal(t, []string{`{"before":"close"}`}, rc.got())
}
