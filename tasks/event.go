package tasks

import (
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/viberq/viberq/provider"
)

// ParseEvent decodes one entry of the events stream (as read by XRANGE or
// XREADGROUP). A bad provider_message_id is an error; a missing or bad "at" leaves At
// zero.
func ParseEvent(m redis.XMessage) (Event, error) {
	str := func(k string) string {
		v, _ := m.Values[k].(string)
		return v
	}
	ev := Event{
		StreamID: m.ID, ID: str("id"), From: State(str("from")), To: State(str("to")),
		Channel: str("channel"), Error: str("error"),
	}
	if v := str("provider_message_id"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return Event{}, fmt.Errorf("entry %s: bad provider_message_id", m.ID)
		}
		ev.ProviderMessageID = provider.MessageID(n)
	}
	if n, err := strconv.ParseInt(str("at"), 10, 64); err == nil {
		ev.At = time.UnixMilli(n).UTC()
	}
	return ev, nil
}
