package faulttest

import (
	"strings"
	"testing"
)

func TestRenderTable(t *testing.T) {
	in := `{"scenario":"kill9","title":"kill -9","fault":"3 × kill -9","messages":10,"states":{"delivered":8,"unknown":2},"channels":{"viber":7,"sms":1},"unknown":2,"unknown_accepted":1,"recover_s":70.4,"duration_s":80,"notes":"first note","pass":true}

{"scenario":"chaos","title":"chaos | profile","messages":5,"states":{"delivered":4,"queued":1},"not_final":1,"duplicates":2,"dup_after_500":1,"dup_ambiguous":1,"faults_500_after_accept":3,"unknown":0,"unknown_accepted":-1,"duration_s":30,"pass":false}
{"scenario":"kill9","title":"kill -9 (again)","messages":10,"states":{"delivered":10},"unknown_accepted":-1,"duration_s":5,"pass":true}
`
	var b strings.Builder
	if err := RenderTable(strings.NewReader(in), &b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| kill -9 (again) | ",                   // the last line of a scenario wins, in first-seen order
		"| chaos / profile | ",                   // no stray column separators
		"delivered 4, queued 1, **not final 1**", // other states and not-final shown
		"2: 1 after a 500-after-accept (3 such faults), 1 of unknown records",
		"**FAIL**",
		"| kill -9 (again) |  | 10 | delivered 10 |",
		"— (run 30 s)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	table, notes, _ := strings.Cut(out, "\nNotes:\n")
	if strings.Index(table, "kill -9 (again)") > strings.Index(table, "chaos / profile") {
		t.Errorf("rows not in the scenario order (kill9 before chaos):\n%s", out)
	}
	if n := strings.Count(table, "\n"); n != 4 {
		t.Errorf("%d lines, want header, separator and 2 rows:\n%s", n, out)
	}
	if strings.Contains(notes, "first note") { // replaced by the later kill9 line, which has none
		t.Errorf("notes of a replaced line:\n%s", out)
	}
	if err := RenderTable(strings.NewReader("{bad"), &b); err == nil {
		t.Error("a bad line must fail")
	}
	if err := RenderTable(strings.NewReader(""), &b); err == nil {
		t.Error("no figures must fail")
	}
}
