package provider

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestViberStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s             ViberStatus
		name          string
		final, failed bool
	}{
		{0, "sent", false, false},
		{1, "delivered", true, false},
		{2, "error", true, true},
		{3, "rejected", true, true},
		{4, "undelivered", true, true},
		{5, "pending", false, false},
		{20, "unknown", false, false},
		{26, "status(26)", false, false}, // the Go SDK's wrong Unknown (vendor notes: Viber statuses)
		{6, "status(6)", false, false},
		{-1, "status(-1)", false, false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.name, tt.s.String())
		assert.Equal(t, tt.final, tt.s.Final(), "%d final", tt.s)
		assert.Equal(t, tt.failed, tt.s.Failed(), "%d failed", tt.s)
	}
}

func TestSMSStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s                     SMSStatus
		name                  string
		final, failed, listed bool
	}{
		{0, "unknown", false, false, true},
		{1, "enroute", false, false, false},
		{2, "delivered", true, false, true},
		{3, "expired", true, true, true},
		{4, "deleted", false, false, false},
		{5, "undeliverable", true, true, true},
		{6, "accepted", false, false, true},
		{7, "unknown", false, false, false},
		{8, "rejected", false, false, false},
		{9, "sms_status(9)", false, false, false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.name, tt.s.String())
		assert.Equal(t, tt.final, tt.s.Final(), "%d final", tt.s)
		assert.Equal(t, tt.failed, tt.s.Failed(), "%d failed", tt.s)
		assert.Equal(t, tt.listed, tt.s.Listed(), "%d listed", tt.s)
	}
}

func TestOutcome(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "pending", OutcomePending.String())
	assert.Equal(t, "delivered_viber", OutcomeDeliveredViber.String())
	assert.Equal(t, "delivered_sms", OutcomeDeliveredSMS.String())
	assert.Equal(t, "undelivered", OutcomeUndelivered.String())
	assert.Equal(t, "outcome(9)", Outcome(9).String())
	assert.False(t, OutcomePending.Final())
	assert.True(t, OutcomeDeliveredViber.Final())
	assert.True(t, OutcomeDeliveredSMS.Final())
	assert.True(t, OutcomeUndelivered.Final())
	assert.False(t, Outcome(9).Final())
}

func smsp(s SMSStatus) *SMSStatus { return &s }

func TestCombine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		viber  ViberStatus
		sms    *SMSStatus
		hasSMS bool
		want   Outcome
	}{
		{"ViberDelivered", ViberDelivered, nil, false, OutcomeDeliveredViber},
		{"ViberDeliveredWithSMSLeg", ViberDelivered, nil, true, OutcomeDeliveredViber},
		{"ViberDeliveredBeatsSMSFailure", ViberDelivered, smsp(SMSExpired), true, OutcomeDeliveredViber},
		{"SMSDelivered", ViberUndelivered, smsp(SMSDelivered), true, OutcomeDeliveredSMS},
		{"SMSDeliveredWhileViberPending", ViberPending, smsp(SMSDelivered), true, OutcomeDeliveredSMS},
		{"SMSDeliveredViberUnknownCode", ViberStatus(99), smsp(SMSDelivered), true, OutcomeDeliveredSMS},
		{"ViberErrorNoFallback", ViberError, nil, false, OutcomeUndelivered},
		{"ViberRejectedNoFallback", ViberRejected, nil, false, OutcomeUndelivered},
		{"ViberUndeliveredNoFallback", ViberUndelivered, nil, false, OutcomeUndelivered},
		{"ViberFailedSMSNotYet", ViberUndelivered, nil, true, OutcomePending},
		{"ViberFailedSMSEnroute", ViberUndelivered, smsp(SMSEnroute), true, OutcomePending},
		{"ViberFailedSMSAccepted", ViberUndelivered, smsp(SMSAccepted), true, OutcomePending},
		{"ViberFailedSMSUnknown0", ViberError, smsp(SMSUnknown), true, OutcomePending},
		{"ViberFailedSMSUnknown7", ViberError, smsp(SMSUnknown7), true, OutcomePending},
		{"ViberFailedSMSUnlistedCode", ViberError, smsp(42), true, OutcomePending},
		{"ViberFailedSMSExpired", ViberUndelivered, smsp(SMSExpired), true, OutcomeUndelivered},
		{"ViberFailedSMSDeletedUnlisted", ViberUndelivered, smsp(SMSDeleted), true, OutcomePending},
		{"ViberFailedSMSUndeliverable", ViberRejected, smsp(SMSUndeliverable), true, OutcomeUndelivered},
		{"ViberFailedSMSRejectedUnlisted", ViberError, smsp(SMSRejected), true, OutcomePending},
		{"Sent", ViberSent, nil, false, OutcomePending},
		{"Pending", ViberPending, nil, true, OutcomePending},
		{"Unknown20", ViberUnknown, nil, false, OutcomePending},
		{"UnlistedViberCode", ViberStatus(26), nil, false, OutcomePending},
		{"SMSFailedButViberPending", ViberPending, smsp(SMSExpired), true, OutcomePending},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, Combine(tt.viber, tt.sms, tt.hasSMS))
			r := StatusResult{Status: tt.viber, SMSStatus: tt.sms}
			assert.Equal(t, tt.want, r.Outcome(tt.hasSMS))
			assert.Equal(t, tt.want, StatusCallback{Status: tt.viber, SMSStatus: tt.sms}.Outcome(tt.hasSMS))
		})
	}
}

func TestMessageIDJSON(t *testing.T) {
	t.Parallel()
	good := map[string]MessageID{
		`429`:                   429,
		`"429"`:                 429,
		` 7 `:                   7,
		`0`:                     0,
		`9223372036854775807`:   9223372036854775807,
		`"9223372036854775807"`: 9223372036854775807,
	}
	for in, want := range good {
		var id MessageID
		require.NoError(t, json.Unmarshal([]byte(in), &id), in)
		assert.Equal(t, want, id, in)
	}
	bad := []string{`-1`, `"-1"`, `4.2`, `"4.2"`, `1e3`, `""`, `"abc"`, `" 42"`, `"+42"`, `true`, `{}`, `[]`,
		`9223372036854775808`, `"99999999999999999999"`, `"0x1F"`, `"４２"`}
	for _, in := range bad {
		var id MessageID = 5
		assert.Error(t, json.Unmarshal([]byte(in), &id), in)
	}
	var id MessageID = 5
	require.NoError(t, json.Unmarshal([]byte(`null`), &id))
	assert.Equal(t, MessageID(5), id, "null leaves the value unchanged")

	b, err := json.Marshal(struct {
		ID MessageID `json:"message_id"`
	}{429})
	require.NoError(t, err)
	assert.Equal(t, `{"message_id":429}`, string(b))
	assert.Equal(t, "429", MessageID(429).String())

	_, err = ParseMessageID("12a")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "12a", "errors never quote the value")
}
