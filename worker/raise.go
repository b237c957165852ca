package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/viberq/viberq/tasks"
)

// raise sends one alert (deduplicated across pods by the Alerter) and pauses the send
// queues when pause is set. It returns a note for the attempt's log line: the queues
// it paused.
func (w *Worker) raise(ctx context.Context, kind, summary, msgID, dest string, d Decision, pause bool) (note string) {
	actx, cancel := detached(ctx)
	defer cancel()
	fields := map[string]string{"msg_id": msgID, "reason": d.Reason}
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
		paused, err := w.pauseSendQueues()
		if err != nil {
			zlog(ctx).Error().Err(err).Msg("cannot pause the send queues")
		}
		if len(paused) > 0 {
			note = "paused queues " + strings.Join(paused, ",")
		}
		fields["queues_paused"] = strings.Join(sendQueues, ",")
	}
	if w.alerter == nil {
		return note
	}
	if err := w.alerter.Alert(actx, Alert{Kind: kind, Summary: summary, Fields: fields, At: w.now().UTC()}); err != nil {
		zlog(ctx).Error().Err(err).Str("alert_kind", kind).Msg("cannot deliver alert")
	}
	return note
}

// sendQueues are the queues paused on 402/401 (polls go on: they cost nothing).
var sendQueues = []string{tasks.QueueCritical, tasks.QueueDefault}

// pauseSendQueues pauses the send queues that are not paused yet and returns those it
// paused. Pausing is shared through Redis: every pod stops taking sends.
func (w *Worker) pauseSendQueues() ([]string, error) {
	var (
		paused []string
		errs   []error
	)
	for _, q := range sendQueues {
		info, err := w.insp.GetQueueInfo(q)
		if err == nil && info.Paused {
			continue
		}
		if err := w.insp.PauseQueue(q); err != nil {
			if info2, err2 := w.insp.GetQueueInfo(q); err2 == nil && info2.Paused {
				continue // paused meanwhile by another pod
			}
			errs = append(errs, fmt.Errorf("pause queue %s: %w", q, err))
			continue
		}
		paused = append(paused, q)
	}
	return paused, errors.Join(errs...)
}
