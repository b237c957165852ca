// Package faulttest holds viberq's reliability and security tests (RELIABILITY.md):
//
//   - fault scenarios run with real processes (`viberq worker`, `viberq sim`,
//     redis-server) and counted at the simulator and in the message records: kill -9
//     of workers, a Redis restart with AOF, the simulator's chaos profile, the balance
//     running out, a backlog whose TTLs run out, garbage answers, SIGTERM mid-batch;
//   - the bad-input catalogue through every entrance (Go API, CLI, HTTP API, outbox
//     stream, callbacks, hand-made task payloads);
//   - the security checks (no key or phone number in logs, metrics or the UI;
//     credentials required; 413; Redis with a password and with TLS);
//   - fuzz targets for the decoders.
//
// The fault scenarios are skipped unless VIBERQ_TEST_REDIS_URL is set. Their size comes
// from VIBERQ_FAULT_SCALE: "short" (default, CI: a few hundred messages each) or
// "full" (thousands, the figures of RELIABILITY.md). Each scenario appends its figures
// as one JSON line (Figures) to the file named by VIBERQ_FAULT_REPORT, and
// RenderTable (the faultreport command) prints them as the RELIABILITY.md table.
//
// Everything but this file is test code.
package faulttest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Figures are the measured results of one fault scenario run.
type Figures struct {
	Scenario string    `json:"scenario"`
	Title    string    `json:"title"`
	Scale    string    `json:"scale"`
	At       time.Time `json:"at"`
	// Fault says what was done, e.g. "3 × kill -9 of 1 of 3 workers, restarted".
	Fault string `json:"fault"`
	// Messages is how many messages were enqueued; States counts their final states
	// and Channels the delivered ones by channel.
	Messages int            `json:"messages"`
	States   map[string]int `json:"states"`
	Channels map[string]int `json:"channels,omitempty"`
	// NotFinal counts messages not in a final state at the end (must be 0).
	NotFinal int `json:"not_final"`
	// SimAccepted is the simulator's count of accepted sends; Duplicates those whose
	// destination and text repeat an earlier accepted send.
	SimAccepted int64 `json:"sim_accepted"`
	Duplicates  int64 `json:"duplicates"`
	// DupAmbiguous are duplicates of messages whose record is unknown; DupAfter500
	// the rest, each explained by a "500 after accept" fault (the error policy
	// retries 5xx: README, Error policy), at most Faults500AfterAccept.
	DupAmbiguous         int64 `json:"dup_ambiguous"`
	DupAfter500          int64 `json:"dup_after_500"`
	Faults500AfterAccept int64 `json:"faults_500_after_accept"`
	// Unknown is the number of unknown records; UnknownAccepted how many of them the
	// provider did accept (known only with the in-process simulator's ledger, -1
	// otherwise).
	Unknown         int `json:"unknown"`
	UnknownAccepted int `json:"unknown_accepted"`
	// Alerts is the number of alert webhook POSTs received.
	Alerts int `json:"alerts"`
	// RecoverSeconds is the time from the end of the last fault to every message
	// final; DurationSeconds the whole run.
	RecoverSeconds  float64 `json:"recover_s"`
	DurationSeconds float64 `json:"duration_s"`
	// MaxSendRPS is the most send-viber requests the simulator received in one
	// second, against viberq's RateLimit; Bucket429 the simulator's 429s that were
	// neither injected nor in a scheduled 429 burst (-1 when not measured).
	MaxSendRPS int64   `json:"max_send_rps,omitempty"`
	RateLimit  float64 `json:"rate_limit,omitempty"`
	Bucket429  int64   `json:"bucket_429"`
	Notes      string  `json:"notes,omitempty"`
	Pass       bool    `json:"pass"`
}

// ReadFigures reads JSON lines of Figures; blank lines are skipped. When a scenario
// appears more than once the last line wins.
func ReadFigures(r io.Reader) ([]Figures, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var out []Figures
	idx := map[string]int{}
	line := 0
	for sc.Scan() {
		line++
		b := strings.TrimSpace(sc.Text())
		if b == "" {
			continue
		}
		var f Figures
		if err := json.Unmarshal([]byte(b), &f); err != nil {
			return nil, fmt.Errorf("report line %d: %w", line, err)
		}
		if i, ok := idx[f.Scenario]; ok {
			out[i] = f
			continue
		}
		idx[f.Scenario] = len(out)
		out = append(out, f)
	}
	return out, sc.Err()
}

// scenarioOrder is the order of the rows; other scenarios follow in the order read.
var scenarioOrder = []string{"kill9", "redis-restart", "chaos", "balance", "ttl-paused", "ttl-lowrate", "garbage",
	"sigterm", "redis-password", "redis-tls", "outbox", "api-kill9", "task-deleted",
	"redis-outage-mid-accept-shorter-than-task", "redis-outage-mid-accept-longer-than-task",
	"long-retry-after", "promo-backlog", "provider-outage"}

// stateOrder is the order of final states in the table.
var stateOrder = []string{"delivered", "undelivered", "expired", "rejected", "dropped", "unknown"}

// RenderTable reads Figures as JSON lines from r and writes the RELIABILITY.md table
// (Markdown) to w, then the scenarios' notes as a list.
func RenderTable(r io.Reader, w io.Writer) error {
	figs, err := ReadFigures(r)
	if err != nil {
		return err
	}
	if len(figs) == 0 {
		return fmt.Errorf("report: no figures")
	}
	rank := func(name string) int {
		for i, s := range scenarioOrder {
			if s == name {
				return i
			}
		}
		return len(scenarioOrder)
	}
	sort.SliceStable(figs, func(i, j int) bool { return rank(figs[i].Scenario) < rank(figs[j].Scenario) })
	var b strings.Builder
	b.WriteString("| scenario | fault | messages | final states | duplicates at provider | unknown | alerts | time to recover | result |\n")
	b.WriteString("| --- | --- | ---: | --- | --- | ---: | ---: | ---: | --- |\n")
	for _, f := range figs {
		result := "pass"
		if !f.Pass {
			result = "**FAIL**"
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %d | %s | %s |\n",
			cell(f.Title, f.Scenario), cell(f.Fault, ""), f.Messages, statesCell(f), dupCell(f),
			unknownCell(f), f.Alerts, recoverCell(f), result)
	}
	first := true
	for _, f := range figs {
		if f.Notes == "" {
			continue
		}
		if first {
			b.WriteString("\nNotes:\n\n")
			first = false
		}
		fmt.Fprintf(&b, "- %s: %s\n", cell(f.Title, f.Scenario), f.Notes)
	}
	_, err = io.WriteString(w, b.String())
	return err
}

func cell(s, fallback string) string {
	if s == "" {
		s = fallback
	}
	return strings.ReplaceAll(s, "|", "/")
}

func statesCell(f Figures) string {
	var parts []string
	seen := map[string]bool{}
	for _, s := range stateOrder {
		seen[s] = true
		if n := f.States[s]; n > 0 {
			p := fmt.Sprintf("%s %d", s, n)
			if s == "delivered" && len(f.Channels) > 0 {
				p += fmt.Sprintf(" (viber %d, sms %d)", f.Channels["viber"], f.Channels["sms"])
			}
			parts = append(parts, p)
		}
	}
	var other []string
	for s, n := range f.States {
		if !seen[s] && n > 0 {
			other = append(other, fmt.Sprintf("%s %d", s, n))
		}
	}
	sort.Strings(other)
	parts = append(parts, other...)
	if f.NotFinal > 0 {
		parts = append(parts, fmt.Sprintf("**not final %d**", f.NotFinal))
	}
	if len(parts) == 0 {
		return "—"
	}
	return strings.Join(parts, ", ")
}

func dupCell(f Figures) string {
	if f.Duplicates == 0 {
		return "0"
	}
	s := fmt.Sprintf("%d", f.Duplicates)
	var why []string
	if f.DupAfter500 > 0 {
		why = append(why, fmt.Sprintf("%d after a 500-after-accept (%d such faults)", f.DupAfter500, f.Faults500AfterAccept))
	}
	if f.DupAmbiguous > 0 {
		why = append(why, fmt.Sprintf("%d of unknown records", f.DupAmbiguous))
	}
	if len(why) > 0 {
		s += ": " + strings.Join(why, ", ")
	}
	return s
}

func unknownCell(f Figures) string {
	if f.UnknownAccepted >= 0 && f.Unknown > 0 {
		return fmt.Sprintf("%d (%d accepted by the provider)", f.Unknown, f.UnknownAccepted)
	}
	return fmt.Sprintf("%d", f.Unknown)
}

func recoverCell(f Figures) string {
	if f.RecoverSeconds <= 0 {
		return fmt.Sprintf("— (run %.0f s)", f.DurationSeconds)
	}
	return fmt.Sprintf("%.0f s (run %.0f s)", f.RecoverSeconds, f.DurationSeconds)
}
