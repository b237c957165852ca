package tasks

import (
	"math"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// asynq's storage layout, written by the Enqueuer's own Lua scripts so that the
// record, its event and the send task are one atomic step (one round trip).
//
// This mirrors github.com/hibiken/asynq v0.26.0 exactly: internal/base (key names,
// EncodeMessage) and internal/rdb (enqueueCmd, scheduleCmd, deleteTaskCmd). asynq
// does not export it, so TestAsynqLayoutContract pins it against the asynq version in
// go.mod: asynq's own client writes byte-identical task hashes, its Inspector lists
// the tasks, its server processes them and TaskID conflicts hold. An asynq upgrade
// that changes the layout fails that test, not production.

const (
	// asynqAllQueues is the set of every queue name (base.AllQueues).
	asynqAllQueues = "asynq:queues"
	// asynqDefaultTimeout is the task timeout asynq's client sets when neither a
	// timeout nor a deadline is given (client.go defaultTimeout).
	asynqDefaultTimeout = 30 * time.Minute
)

// asynqQueuePrefix returns "asynq:{qname}:" (base.QueueKeyPrefix).
func asynqQueuePrefix(qname string) string { return "asynq:{" + qname + "}:" }

// asynqTaskKey returns "asynq:{qname}:t:{id}" (base.TaskKey).
func asynqTaskKey(qname, id string) string { return asynqQueuePrefix(qname) + "t:" + id }

// asynqPendingKey returns "asynq:{qname}:pending" (base.PendingKey).
func asynqPendingKey(qname string) string { return asynqQueuePrefix(qname) + "pending" }

// asynqScheduledKey returns "asynq:{qname}:scheduled" (base.ScheduledKey).
func asynqScheduledKey(qname string) string { return asynqQueuePrefix(qname) + "scheduled" }

// asynqMessage is the part of asynq's TaskMessage that an enqueue sets.
type asynqMessage struct {
	Type      string
	Payload   []byte
	ID        string
	Queue     string
	Retry     int
	Timeout   time.Duration // whole seconds
	Retention time.Duration // whole seconds
}

// encode returns the protobuf encoding of m as asynq's base.EncodeMessage writes it
// for a task enqueued by asynq.Client with TaskID, Queue, MaxRetry and Retention
// (no deadline, no unique key, no group, no headers). Fields are written in field
// number order with proto3's zero values left out, as Go's protobuf marshaller does,
// so the bytes equal asynq's (the contract test compares them).
//
// asynq.proto TaskMessage: type=1 string, payload=2 bytes, id=3 string, queue=4
// string, retry=5 int32, timeout=8 int64, deadline=9 int64, retention=12 int64.
func (m asynqMessage) encode() []byte {
	b := make([]byte, 0, len(m.Payload)+len(m.Type)+len(m.ID)+len(m.Queue)+32)
	str := func(num protowire.Number, s string) {
		if s != "" {
			b = protowire.AppendTag(b, num, protowire.BytesType)
			b = protowire.AppendString(b, s)
		}
	}
	varint := func(num protowire.Number, v int64) {
		if v != 0 {
			b = protowire.AppendTag(b, num, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(v))
		}
	}
	str(1, m.Type)
	if len(m.Payload) > 0 {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, m.Payload)
	}
	str(3, m.ID)
	str(4, m.Queue)
	varint(5, int64(int32(m.Retry)))
	varint(8, int64(m.Timeout/time.Second))
	varint(12, int64(m.Retention/time.Second))
	return b
}

// scheduleScore returns the score of a task scheduled at t in asynq's scheduled set:
// Unix seconds rounded up. asynq's forwarder moves a task when its score is at most
// the current Unix second, and asynq's own client rounds down (ProcessAt has
// one-second granularity), which can run a task up to a second early; rounding up
// guarantees a message is never sent before its send_at.
func scheduleScore(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() > 0 && s < math.MaxInt64 {
		s++
	}
	return s
}
