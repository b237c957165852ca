package dtsim

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"time"

	"github.com/viberq/viberq/provider"
)

// store keeps the last cap accepted messages in a ring indexed by message id: ids are
// handed out consecutively, so id-base modulo cap is the slot. Not safe for
// concurrent use: the Sim's mutex guards it.
type store struct {
	recs []record
	cap  int
	base int64 // id stored in slot 0 of the first lap
	lo   int64 // oldest id still stored
	next int64 // next id to hand out

	seen       map[uint64]uint32 // (destination, text hash) key → stored messages with it
	duplicates int64
	evicted    int64
}

func newStore(capacity int, first int64) store {
	return store{cap: capacity, base: first, lo: first, next: first, seen: make(map[uint64]uint32)}
}

// reset forgets every message; ids keep growing, so a stale id never names a new message.
func (st *store) reset() {
	*st = store{cap: st.cap, base: st.next, lo: st.next, next: st.next, seen: make(map[uint64]uint32)}
}

func (st *store) len() int { return int(st.next - st.lo) }

// add stores rec under the next id and reports whether its (destination, text) pair
// was already stored.
func (st *store) add(rec record, key uint64) (dup bool) {
	if st.len() == st.cap {
		old := &st.recs[st.slot(st.lo)]
		if n := st.seen[old.key()]; n <= 1 {
			delete(st.seen, old.key())
		} else {
			st.seen[old.key()] = n - 1
		}
		st.lo++
		st.evicted++
	}
	n := st.seen[key]
	st.seen[key] = n + 1
	if n > 0 {
		st.duplicates++
		rec.flags |= flagDup
	}
	i := st.slot(rec.id)
	if i == len(st.recs) {
		if len(st.recs) == cap(st.recs) { // grow, but never past the ring's size
			grown := make([]record, len(st.recs), min(st.cap, max(1024, 2*len(st.recs))))
			copy(grown, st.recs)
			st.recs = grown
		}
		st.recs = append(st.recs, rec)
	} else {
		st.recs[i] = rec
	}
	st.next = rec.id + 1
	return n > 0
}

func (st *store) slot(id int64) int { return int((id - st.base) % int64(st.cap)) }

// get returns the stored record of id, or nil.
func (st *store) get(id int64) *record {
	if id < st.lo || id >= st.next {
		return nil
	}
	return &st.recs[st.slot(id)]
}

// each calls fn for every stored record, oldest first.
func (st *store) each(fn func(*record)) {
	for id := st.lo; id < st.next; id++ {
		fn(&st.recs[st.slot(id)])
	}
}

// dupKey identifies a (destination, text) pair: 64 bits of a SHA-256 over both, so the
// duplicate map stays small; a false match needs ~2^32 stored messages.
func dupKey(dest string, textHash [32]byte) uint64 {
	h := sha256.New()
	h.Write([]byte(dest))
	h.Write([]byte{0})
	h.Write(textHash[:])
	var sum [32]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}

func (r *record) key() uint64 { return dupKey(r.dest, r.textHash) }

// LedgerEntry is one accepted send.
type LedgerEntry struct {
	MessageID   provider.MessageID `json:"message_id"`
	Destination string             `json:"destination"`
	TextHash    string             `json:"text_sha256"` // hex SHA-256 of text (see HashText)
	At          time.Time          `json:"at"`
	StatusCalls int                `json:"status_calls"`
	Duplicate   bool               `json:"duplicate"` // an earlier stored entry has the same destination and text
}

// HashText is the LedgerEntry.TextHash of text.
func HashText(text string) string {
	h := sha256.Sum256([]byte(text))
	return hex.EncodeToString(h[:])
}

// perSecond counts accepted sends per second of the simulator's clock for the last
// hour (a ring of 3600 slots).
type perSecond struct {
	slots [3600]struct{ sec, n int64 }
	max   int64
}

func (p *perSecond) add(t time.Time) {
	sec := t.Unix()
	s := &p.slots[uint64(sec)%uint64(len(p.slots))]
	if s.sec != sec {
		s.sec, s.n = sec, 0
	}
	s.n++
	p.max = max(p.max, s.n)
}

func (p *perSecond) snapshot(now time.Time) map[int64]int64 {
	m := make(map[int64]int64)
	cut := now.Unix() - int64(len(p.slots))
	for _, s := range p.slots {
		if s.n > 0 && s.sec > cut {
			m[s.sec] = s.n
		}
	}
	return m
}
