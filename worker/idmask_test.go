package worker

import (
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider/dtsim"
	"github.com/viberq/viberq/tasks"
)

// A producer's message ID may hold a phone number (an idempotency key such as
// "otp-380501234567"). The send path's log lines show it masked, in msg_id and in the
// error text of a failed attempt; the record keeps the ID as given.
func TestSendLogsMaskAPhoneInTheMessageID(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	const okID, failID, otherPhone = "otp-" + testPhone, "otp-380671112233", "380671112233"

	_, task := b.newSend(t, okID, transactional(), time.Now().Add(time.Hour))
	require.NoError(t, b.process(t, task))
	require.Equal(t, tasks.StateAccepted, b.record(t, okID).State, "the record is found under the ID as given")

	require.NoError(t, b.sim.InjectFault(dtsim.EndpointSend, dtsim.FaultServerError, 1))
	_, task = b.newSend(t, failID, transactional(), time.Now().Add(time.Hour))
	require.Error(t, b.process(t, task))

	lines := b.logs.lines(t, "task ")
	require.Len(t, lines, 2)
	require.Equal(t, "otp-380*****4567", lines[0]["msg_id"])
	require.Equal(t, "otp-380*****2233", lines[1]["msg_id"])
	require.Equal(t, "retry", lines[1]["outcome"])
	require.Contains(t, lines[1]["error"], "send otp-380*****2233: ", "the error names the message, masked")
	all := b.logs.String()
	require.NotContains(t, all, testPhone)
	require.NotContains(t, all, otherPhone)
}

// asynq's own lines name task IDs, which are message IDs: they are logged masked.
func TestAsynqLinesMaskTaskIDs(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	NewAsynqLogger(zerolog.New(&buf)).Warn("Retry exhausted for task id=", "otp-"+testPhone)
	require.Contains(t, buf.String(), "Retry exhausted for task id=otp-380*****4567")
	require.NotContains(t, buf.String(), testPhone)
}
