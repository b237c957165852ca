package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/viberq/viberq/tasks"
)

// send --csv with send_at and batch columns writes every row's ID and result to
// --out (generated IDs included); batch status counts them; batch cancel stops them.
func TestSendCSVOutBatchAndCancel(t *testing.T) {
	c := newCLI(t)
	at := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
	path := writeFile(t, "camp.csv", "from,to,text,source,send_at,batch_id\n"+
		"Shop,380501234567,Sale one,1,"+at.Format(time.RFC3339)+",\n"+
		"Shop,380501234568,Sale two,1,,other\n"+
		"Shop,+380,Sale three,1,,\n"+
		"Shop,380501234569,Sale four,1,tomorrow,\n")
	out := filepath.Join(t.TempDir(), "ids.csv")
	code, stdout, errOut := c.run("send", "--csv", path, "--batch", "xmas", "--out", out)
	if code != 1 || !strings.Contains(stdout, "enqueued 2, duplicates 0, refused 2") {
		t.Fatalf("code %d, stdout %q, stderr %q", code, stdout, errOut)
	}
	fh, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	rows, err := csv.NewReader(fh).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 5 || strings.Join(rows[0], ",") != "line,id,result,reason" {
		t.Fatalf("--out = %v", rows)
	}
	for i, want := range []string{"accepted", "accepted", "refused", "refused"} {
		if rows[i+1][0] != []string{"2", "3", "4", "5"}[i] || rows[i+1][2] != want {
			t.Errorf("row %d = %v, want line %d %s", i+1, rows[i+1], i+2, want)
		}
	}
	first, second := rows[1][1], rows[2][1]
	if first == "" || second == "" {
		t.Fatalf("generated IDs missing: %v", rows)
	}
	if !strings.Contains(rows[3][3], "destination_addr") || !strings.Contains(rows[4][3], "send_at") {
		t.Errorf("reasons = %q, %q", rows[3][3], rows[4][3])
	}
	rec := c.mustRecord(first)
	if rec.BatchID != "xmas" || !rec.SendAt.Equal(at) {
		t.Errorf("first row: batch %q send_at %v, want xmas %v", rec.BatchID, rec.SendAt, at)
	}
	if rec := c.mustRecord(second); rec.BatchID != "other" || !rec.SendAt.IsZero() {
		t.Errorf("second row: batch %q send_at %v, want its own batch, no send_at", rec.BatchID, rec.SendAt)
	}

	var counts tasks.BatchCounts
	if err := json.Unmarshal([]byte(c.mustRun("batch", "status", "xmas", "--json")), &counts); err != nil {
		t.Fatal(err)
	}
	if counts.Total != 1 || counts.States[tasks.StateQueued] != 1 {
		t.Errorf("batch status = %+v", counts)
	}
	if got := c.mustRun("batch", "cancel", "xmas"); !strings.Contains(got, "cancelled 1, not cancelled 0") {
		t.Errorf("batch cancel: %q", got)
	}
	if rec := c.mustRecord(first); rec.State != tasks.StateCancelled {
		t.Errorf("after cancel: %s", rec.State)
	}
	if got := c.mustRun("cancel", second); !strings.Contains(got, "cancelled") {
		t.Errorf("cancel: %q", got)
	}
	if code, _, errOut := c.run("cancel", second); code != 1 || !strings.Contains(errOut, "it is cancelled") {
		t.Errorf("second cancel: %d %q", code, errOut)
	}
	// The same with --json: the answer on stdout, the failure in the exit code.
	if code, out, _ := c.run("cancel", second, "--json"); code != 1 || !strings.Contains(out, `"cancelled":false`) {
		t.Errorf("second cancel --json: %d %q", code, out)
	}
	if code, _, errOut := c.run("batch", "status", "nope"); code != 1 || !strings.Contains(errOut, "not found") {
		t.Errorf("unknown batch: %d %q", code, errOut)
	}
	if code, _, _ := c.run("batch", "frobnicate", "x"); code != 2 {
		t.Errorf("unknown verb: exit %d, want 2", code)
	}
}

// send --send-at schedules one message; --out as JSON lines.
func TestSendSendAtAndJSONLines(t *testing.T) {
	c := newCLI(t)
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	id := strings.TrimSpace(c.mustRun("send", "--from", "Shop", "--to", "380501234567", "--text", "Later",
		"--send-at", at.Format(time.RFC3339), "--batch", "b1"))
	if rec := c.mustRecord(id); !rec.SendAt.Equal(at) || rec.BatchID != "b1" {
		t.Errorf("record send_at %v batch %q", rec.SendAt, rec.BatchID)
	}
	if code, _, errOut := c.run("send", "--from", "Shop", "--to", "380501234567", "--text", "x", "--send-at", "noon"); code != 2 || !strings.Contains(errOut, "--send-at: must be an RFC 3339 time") {
		t.Errorf("bad --send-at: %d %q", code, errOut)
	}
	out := filepath.Join(t.TempDir(), "ids.jsonl")
	c.mustRun("send", "--csv", writeFile(t, "one.csv", "id,from,to,text\nj-1,Shop,380501234567,Hi\n"), "--out", out)
	fh, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	var lines []map[string]any
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 1 || lines[0]["id"] != "j-1" || lines[0]["result"] != "accepted" || lines[0]["line"] != 2.0 {
		t.Errorf("--out jsonl = %v", lines)
	}
}
