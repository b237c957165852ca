package dtsim

import (
	"testing"
	"unicode/utf8"
)

// FuzzSendBody: the simulator's decoder and rules never panic, and what they accept
// keeps the page's hard limits.
func FuzzSendBody(f *testing.F) {
	for _, s := range []string{
		`{"source_addr":"Shop","destination_addr":"380501234567","message_type":106,"text":"hi","text_sms":"x","source_type":2,"validity_period":40}`,
		`{"source_addr":"Custom Company","destination_addr":8882222200,"message_type":106,"text":"Message content","text_sms":"SMS message content","image":"https://yourdomain.com/images/image.jpg","button_caption":"Join Us","button_action":"https://yourdomain.com/join-us","source_type":2,"callback_url":"https://yourdomain.com/viber-callback","validity_period":40}`,
		`{"source_addr":"S","destination_addr":"1","message_type":"108","text":"t","image":"ftp://h/x","source_type":"1"}`,
		`{"message_type":1e400}`, `[]`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, field, _ := decodeSend(body)
		if field != "" {
			return
		}
		if field, _ = checkSend(m); field != "" {
			return
		}
		if m.SourceAddr == "" || utf8.RuneCountInString(m.SourceAddr) > 20 || utf8.RuneCountInString(m.DestinationAddr) > 20 ||
			m.Text == "" || utf8.RuneCountInString(m.Text) > 1000 || utf8.RuneCountInString(m.ButtonCaption) > 30 {
			t.Fatalf("accepted past a limit: %+v", m)
		}
		if m.SourceType != 1 && m.SourceType != 2 {
			t.Fatalf("accepted source_type %d", m.SourceType)
		}
		if m.TextSMS != "" && (m.SourceType != 2 || (m.ValidityPeriod != 0 && m.ValidityPeriod != 40)) {
			t.Fatalf("accepted text_sms outside a transactional 40 s message: %+v", m)
		}
	})
}
