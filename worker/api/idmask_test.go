package api_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// logLine returns the fields of the first JSON log line whose message is msg.
func logLine(t *testing.T, logs, msg string) map[string]any {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var v map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &v), sc.Text())
		if v["message"] == msg {
			return v
		}
	}
	t.Fatalf("no log line %q in:\n%s", msg, logs)
	return nil
}

// A producer's ID may hold a phone number (an idempotency key "otp-380501234567", a
// batch named after a customer's number). The API answers the producer with the ID
// as given, and logs it masked: the enqueue line, the cancel line, the batch lines
// and the request line's path. (setup's cleanup also fails the test if the number
// reaches the log anywhere.)
func TestAPILogsMaskAPhoneInIDs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	auth := []string{"Authorization", "Bearer " + apiToken, "Content-Type", "application/json"}
	const id, batchID = "otp-" + phone, "camp-" + phone

	r := b.post(t, validBody, "Idempotency-Key", id)
	require.Equal(t, http.StatusAccepted, r.status, r.body)
	require.Contains(t, r.body, `"id":"`+id+`"`, "the producer gets its own ID back as given")
	require.Equal(t, "otp-380*****4567", logLine(t, b.logs.String(), "message accepted")["msg_id"])

	r = b.do(t, http.MethodPost, "/v1/messages/"+id+"/cancel", "", auth...)
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Equal(t, "otp-380*****4567", logLine(t, b.logs.String(), "cancel")["msg_id"])

	r = b.do(t, http.MethodPost, "/v1/batches", `{"batch_id":"`+batchID+`","messages":[`+validBody+`]}`, auth...)
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Contains(t, r.body, `"batch_id":"`+batchID+`"`)
	require.Equal(t, "camp-380*****4567", logLine(t, b.logs.String(), "batch taken")["batch_id"])
	r = b.do(t, http.MethodPost, "/v1/batches/"+batchID+"/cancel", "", auth...)
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Equal(t, "camp-380*****4567", logLine(t, b.logs.String(), "batch cancelled")["batch_id"])

	require.NotContains(t, b.logs.String(), phone)
}
