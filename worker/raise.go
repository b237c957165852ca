package worker

import (
	"context"
	"strings"

	"github.com/viberq/viberq/provider"
)

// raise sends one alert (deduplicated across pods by the Alerter) and pauses the send
// queues when pause is set. It returns a note for the attempt's log line: the queues
// it paused.
func (w *Worker) raise(ctx context.Context, kind, summary, msgID, dest string, d Decision, pause bool) (note string) {
	actx, cancel := detached(ctx)
	defer cancel()
	fields := map[string]string{"msg_id": provider.MaskID(msgID), "reason": d.Reason}
	if dest != "" {
		fields["dest"] = dest
	}
	if d.HTTPStatus != 0 {
		fields["http_status"] = itoa(d.HTTPStatus)
	}
	if d.VendorCode >= 0 {
		fields["vendor_code"] = itoa(d.VendorCode)
	}
	if pause {
		paused, err := PauseSendQueues(w.insp)
		if err != nil {
			zlog(ctx).Error().Err(err).Msg("cannot pause the send queues")
		}
		if len(paused) > 0 {
			note = "paused queues " + strings.Join(paused, ",")
		}
		if err != nil {
			fields["queues_paused"] = "failed: " + err.Error()
		} else {
			fields["queues_paused"] = strings.Join(SendQueues, ",") // by this pod or already by another
		}
	}
	if w.alerter == nil {
		return note
	}
	if err := w.alerter.Alert(actx, Alert{Kind: kind, Summary: summary, Fields: fields, At: w.now().UTC()}); err != nil {
		zlog(ctx).Error().Err(err).Str("alert_kind", kind).Msg("cannot deliver alert")
	}
	return note
}
