package provider

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func validText() Message {
	return Message{
		SourceAddr:      "Custom Company",
		DestinationAddr: "380501234567",
		MessageType:     TypeText,
		Text:            "Your code is 1234",
		SourceType:      SourceTransactional,
	}
}

func validImage() Message {
	return Message{
		SourceAddr:      "Custom Company",
		DestinationAddr: "380501234567",
		MessageType:     TypeTextImageButton,
		Text:            "Spring sale",
		Image:           "https://example.com/images/sale.jpg",
		ButtonCaption:   "Join Us",
		ButtonAction:    "https://example.com/join",
		SourceType:      SourcePromotional,
	}
}

// gsmSpecials holds every non-ASCII character of the GSM 03.38 basic set, plus CR LF:
// each is one septet.
const gsmSpecials = "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¡ÄÖÑÜ§¿äöñüà\r\n"

func TestValidate(t *testing.T) {
	t.Parallel()
	rep := strings.Repeat
	tests := []struct {
		name  string
		base  func() Message
		mod   func(*Message)
		field string // "" means valid
		rule  string // substring of the rule, optional
	}{
		// base messages
		{name: "Text106Transactional", base: validText},
		{name: "Text106Promotional", base: validText, mod: func(m *Message) { m.SourceType = SourcePromotional }},
		{name: "Image108", base: validImage},

		// source_addr
		{name: "SourceAddr20", base: validText, mod: func(m *Message) { m.SourceAddr = rep("s", 20) }},
		{name: "SourceAddr21", base: validText, mod: func(m *Message) { m.SourceAddr = rep("s", 21) }, field: "source_addr", rule: "must be at most 20 characters, got 21"},
		{name: "SourceAddr20Cyrillic", base: validText, mod: func(m *Message) { m.SourceAddr = rep("ж", 20) }},
		{name: "SourceAddr21Cyrillic", base: validText, mod: func(m *Message) { m.SourceAddr = rep("ж", 21) }, field: "source_addr", rule: "got 21"},
		{name: "SourceAddrEmpty", base: validText, mod: func(m *Message) { m.SourceAddr = "" }, field: "source_addr", rule: "is required"},
		{name: "SourceAddrInvalidUTF8", base: validText, mod: func(m *Message) { m.SourceAddr = "a\xffb" }, field: "source_addr", rule: "UTF-8"},

		// destination_addr
		{name: "Destination15", base: validText, mod: func(m *Message) { m.DestinationAddr = rep("1", 15) }},
		{name: "Destination16", base: validText, mod: func(m *Message) { m.DestinationAddr = rep("1", 16) }, field: "destination_addr", rule: "must be 7 to 15 digits (an international number, E.164), got 16"},
		{name: "Destination7", base: validText, mod: func(m *Message) { m.DestinationAddr = "6834321" }},
		{name: "Destination6", base: validText, mod: func(m *Message) { m.DestinationAddr = "683432" }, field: "destination_addr", rule: "must be 7 to 15 digits (an international number, E.164), got 6"},
		{name: "Destination1", base: validText, mod: func(m *Message) { m.DestinationAddr = "1" }, field: "destination_addr", rule: "got 1"},
		{name: "DestinationEmpty", base: validText, mod: func(m *Message) { m.DestinationAddr = "" }, field: "destination_addr", rule: "is required"},
		{name: "DestinationPlus", base: validText, mod: func(m *Message) { m.DestinationAddr = "+380501234567" }, field: "destination_addr", rule: "digits only"},
		{name: "DestinationSpace", base: validText, mod: func(m *Message) { m.DestinationAddr = "380 501234567" }, field: "destination_addr", rule: "digits only"},
		{name: "DestinationLetters", base: validText, mod: func(m *Message) { m.DestinationAddr = "38050123456a" }, field: "destination_addr", rule: "digits only"},
		{name: "DestinationNonASCIIDigits", base: validText, mod: func(m *Message) { m.DestinationAddr = "٣٨٠٥٠١٢٣٤٥٦٧" }, field: "destination_addr", rule: "digits only"},

		// text
		{name: "Text1000", base: validText, mod: func(m *Message) { m.Text = rep("t", 1000) }},
		{name: "Text1001", base: validText, mod: func(m *Message) { m.Text = rep("t", 1001) }, field: "text", rule: "must be at most 1000 characters, got 1001"},
		{name: "Text1000Emoji", base: validText, mod: func(m *Message) { m.Text = rep("😀", 1000) }},
		{name: "Text1001Emoji", base: validText, mod: func(m *Message) { m.Text = rep("😀", 1001) }, field: "text", rule: "got 1001"},
		{name: "TextEmpty", base: validText, mod: func(m *Message) { m.Text = "" }, field: "text", rule: "is required"},
		{name: "TextInvalidUTF8", base: validText, mod: func(m *Message) { m.Text = "\xc3\x28" }, field: "text", rule: "UTF-8"},

		// button_caption
		{name: "Caption30", base: validImage, mod: func(m *Message) { m.ButtonCaption = rep("c", 30) }},
		{name: "Caption31", base: validImage, mod: func(m *Message) { m.ButtonCaption = rep("c", 31) }, field: "button_caption", rule: "must be at most 30 characters, got 31"},
		{name: "Caption30Cyrillic", base: validImage, mod: func(m *Message) { m.ButtonCaption = rep("ц", 30) }},

		// text_sms: GSM-7
		{name: "SMS159GSM", base: validText, mod: func(m *Message) { m.TextSMS = rep("a", 159) }},
		{name: "SMS160GSM", base: validText, mod: func(m *Message) { m.TextSMS = rep("a", 160) }},
		{name: "SMS161GSM", base: validText, mod: func(m *Message) { m.TextSMS = rep("a", 161) }, field: "text_sms", rule: "at most 160 GSM-7 units, got 161"},
		{name: "SMSGSMSpecials", base: validText, mod: func(m *Message) { m.TextSMS = gsmSpecials + rep("a", 160-utf8.RuneCountInString(gsmSpecials)) }},
		{name: "SMSGSMSpecialsOver", base: validText, mod: func(m *Message) { m.TextSMS = gsmSpecials + rep("a", 161-utf8.RuneCountInString(gsmSpecials)) }, field: "text_sms", rule: "GSM-7 units, got 161"},
		{name: "SMSExtension80Euro", base: validText, mod: func(m *Message) { m.TextSMS = rep("€", 80) }},
		{name: "SMSExtension80EuroPlus1", base: validText, mod: func(m *Message) { m.TextSMS = rep("€", 80) + "a" }, field: "text_sms", rule: "GSM-7 units, got 161"},
		{name: "SMSExtension158Plus1", base: validText, mod: func(m *Message) { m.TextSMS = rep("a", 158) + "^" }},
		{name: "SMSExtension159Plus1", base: validText, mod: func(m *Message) { m.TextSMS = rep("a", 159) + "|" }, field: "text_sms", rule: "got 161"},
		{name: "SMSExtensionAll", base: validText, mod: func(m *Message) { m.TextSMS = rep("^{}\\[~]|€\f", 8) }},                                                            // 80 chars, 160 units
		{name: "SMSExtensionAllOver", base: validText, mod: func(m *Message) { m.TextSMS = rep("^{}\\[~]|€\f", 8) + "{" }, field: "text_sms", rule: "GSM-7 units, got 162"}, // 81 chars
		// text_sms: UCS-2
		{name: "SMS70UCS2", base: validText, mod: func(m *Message) { m.TextSMS = rep("ж", 70) }},
		{name: "SMS71UCS2", base: validText, mod: func(m *Message) { m.TextSMS = rep("ж", 71) }, field: "text_sms", rule: "at most 70 UCS-2 units, got 71"},
		{name: "SMS69UCS2", base: validText, mod: func(m *Message) { m.TextSMS = rep("ж", 69) }},
		{name: "SMSMixed70", base: validText, mod: func(m *Message) { m.TextSMS = rep("a", 69) + "ж" }},
		{name: "SMSMixed71", base: validText, mod: func(m *Message) { m.TextSMS = rep("a", 70) + "ж" }, field: "text_sms", rule: "UCS-2 units, got 71"},
		{name: "SMSOneNonGSMForcesUCS2", base: validText, mod: func(m *Message) { m.TextSMS = rep("a", 100) + "ç" }, field: "text_sms", rule: "UCS-2 units, got 101"},
		{name: "SMSEmoji35", base: validText, mod: func(m *Message) { m.TextSMS = rep("😀", 35) }},
		{name: "SMSEmoji35Plus1", base: validText, mod: func(m *Message) { m.TextSMS = rep("😀", 35) + "a" }, field: "text_sms", rule: "UCS-2 units, got 71"},
		{name: "SMSEmoji34PlusTwo", base: validText, mod: func(m *Message) { m.TextSMS = rep("😀", 34) + "ab" }},
		{name: "SMSEuroInUCS2CountsOne", base: validText, mod: func(m *Message) { m.TextSMS = rep("€", 69) + "ж" }},
		// text_sms: combinations (vendor notes: fields and limits)
		{name: "SMSWith106Promotional", base: validText, mod: func(m *Message) { m.SourceType = SourcePromotional; m.TextSMS = "fallback" }, field: "text_sms", rule: "only with message_type 106 and source_type 2"},
		{name: "SMSWith206Transactional", base: validText, mod: func(m *Message) { m.MessageType = TypeTwoWayText; m.TextSMS = "fallback" }, field: "text_sms", rule: "only with message_type 106"},
		{name: "SMSWith206Promotional", base: validText, mod: func(m *Message) {
			m.MessageType, m.SourceType, m.TextSMS = TypeTwoWayText, SourcePromotional, "fallback"
		}, field: "text_sms"},
		{name: "SMSWith108", base: validImage, mod: func(m *Message) { m.TextSMS = "fallback" }, field: "text_sms"},
		{name: "SMSWith208", base: validImage, mod: func(m *Message) { m.MessageType = TypeTwoWayTextImageButton; m.TextSMS = "fallback" }, field: "text_sms"},

		// message_type
		{name: "Type0", base: validText, mod: func(m *Message) { m.MessageType = 0 }, field: "message_type", rule: "got 0"},
		{name: "Type225", base: validText, mod: func(m *Message) { m.MessageType = 225 }, field: "message_type", rule: "must be one of 106, 108, 206, 208, got 225"},
		{name: "Type107", base: validText, mod: func(m *Message) { m.MessageType = 107 }, field: "message_type"},
		{name: "Type206Promotional", base: validText, mod: func(m *Message) { m.MessageType, m.SourceType = TypeTwoWayText, SourcePromotional }},
		{name: "Type206Transactional", base: validText, mod: func(m *Message) { m.MessageType = TypeTwoWayText }},
		{name: "Type208Promotional", base: validImage, mod: func(m *Message) { m.MessageType = TypeTwoWayTextImageButton }},

		// source_type and its combinations
		{name: "Source0", base: validText, mod: func(m *Message) { m.SourceType = 0 }, field: "source_type", rule: "got 0"},
		{name: "Source3", base: validText, mod: func(m *Message) { m.SourceType = 3 }, field: "source_type", rule: "must be 1 (promotional) or 2 (transactional), got 3"},
		{name: "Image108Transactional", base: validImage, mod: func(m *Message) { m.SourceType = SourceTransactional }, field: "source_type", rule: "transactional messages are text only"},
		{name: "Image208Transactional", base: validImage, mod: func(m *Message) { m.MessageType, m.SourceType = TypeTwoWayTextImageButton, SourceTransactional }, field: "source_type"},

		// 106/206 are text only (vendor notes: fields and limits)
		{name: "Text106WithImage", base: validText, mod: func(m *Message) { m.Image = "https://example.com/a.jpg" }, field: "image", rule: "must be empty for message_type 106"},
		{name: "Text106WithCaption", base: validText, mod: func(m *Message) { m.ButtonCaption = "Go" }, field: "button_caption", rule: "must be empty"},
		{name: "Text106WithAction", base: validText, mod: func(m *Message) { m.ButtonAction = "https://example.com" }, field: "button_action", rule: "must be empty"},
		{name: "Text206WithImage", base: validText, mod: func(m *Message) { m.MessageType = TypeTwoWayText; m.Image = "https://example.com/a.jpg" }, field: "image", rule: "message_type 206"},
		// 108/208 need image, caption and action
		{name: "Image108NoImage", base: validImage, mod: func(m *Message) { m.Image = "" }, field: "image", rule: "is required for message_type 108"},
		{name: "Image108NoCaption", base: validImage, mod: func(m *Message) { m.ButtonCaption = "" }, field: "button_caption", rule: "is required"},
		{name: "Image108NoAction", base: validImage, mod: func(m *Message) { m.ButtonAction = "" }, field: "button_action", rule: "is required"},
		{name: "Image208NoImage", base: validImage, mod: func(m *Message) { m.MessageType = TypeTwoWayTextImageButton; m.Image = "" }, field: "image", rule: "message_type 208"},

		// image URL
		{name: "ImageHTTP", base: validImage, mod: func(m *Message) { m.Image = "http://example.com/a.jpg" }},
		{name: "ImageUpperJPG", base: validImage, mod: func(m *Message) { m.Image = "https://example.com/A.JPG" }},
		{name: "ImageJPEG", base: validImage, mod: func(m *Message) { m.Image = "https://example.com/a.jpeg" }},
		{name: "ImagePNG", base: validImage, mod: func(m *Message) { m.Image = "https://example.com/a.Png" }},
		{name: "ImagePNGWithQuery", base: validImage, mod: func(m *Message) { m.Image = "https://example.com/a.png?v=2" }},
		{name: "ImageGIF", base: validImage, mod: func(m *Message) { m.Image = "https://example.com/a.gif" }, field: "image", rule: "must be a jpg, jpeg or png image, but the URL path names a .gif file"},
		{name: "ImageNoExtension", base: validImage, mod: func(m *Message) { m.Image = "https://example.com/image" }},
		{name: "ImageCDNQuery", base: validImage, mod: func(m *Message) { m.Image = "https://cdn.example.com/img?id=5" }},
		{name: "ImageScript", base: validImage, mod: func(m *Message) { m.Image = "https://example.com/render.php?id=5" }},
		{name: "ImageVersionSegment", base: validImage, mod: func(m *Message) { m.Image = "https://example.com/v1.2/img" }},
		{name: "ImageExtensionOnlyInQuery", base: validImage, mod: func(m *Message) { m.Image = "https://example.com/img?f=a.gif" }},
		{name: "ImageWEBP", base: validImage, mod: func(m *Message) { m.Image = "https://example.com/a.WEBP" }, field: "image", rule: "names a .webp file"},
		{name: "ImageJPGExe", base: validImage, mod: func(m *Message) { m.Image = "https://example.com/a.jpg.exe" }, field: "image", rule: "names a .exe file"},
		{name: "ImageRelative", base: validImage, mod: func(m *Message) { m.Image = "/images/a.jpg" }, field: "image", rule: "absolute http or https URL"},
		{name: "ImageFTP", base: validImage, mod: func(m *Message) { m.Image = "ftp://example.com/a.jpg" }, field: "image", rule: "absolute"},
		{name: "ImageNoHost", base: validImage, mod: func(m *Message) { m.Image = "https:///a.jpg" }, field: "image", rule: "absolute"},
		{name: "ImageGarbage", base: validImage, mod: func(m *Message) { m.Image = "ht tp://%zz/a.jpg" }, field: "image"},
		// button_action URL
		{name: "ActionHTTP", base: validImage, mod: func(m *Message) { m.ButtonAction = "http://example.com/x?a=1&b=2" }},
		{name: "ActionRelative", base: validImage, mod: func(m *Message) { m.ButtonAction = "example.com/join" }, field: "button_action", rule: "absolute http or https URL"},
		{name: "ActionJavascript", base: validImage, mod: func(m *Message) { m.ButtonAction = "javascript:alert(1)" }, field: "button_action"},
		{name: "ActionMailto", base: validImage, mod: func(m *Message) { m.ButtonAction = "mailto:a@example.com" }, field: "button_action"},
		// callback_url
		{name: "CallbackHTTPS", base: validText, mod: func(m *Message) { m.CallbackURL = "https://example.com/viber-callback" }},
		{name: "CallbackRelative", base: validText, mod: func(m *Message) { m.CallbackURL = "/viber-callback" }, field: "callback_url", rule: "absolute"},
		{name: "CallbackFTP", base: validText, mod: func(m *Message) { m.CallbackURL = "ftp://example.com/cb" }, field: "callback_url"},

		// validity_period (vendor notes: TTL)
		{name: "ValidityUnset", base: validText, mod: func(m *Message) { m.ValidityPeriod = 0 }},
		{name: "Validity39", base: validText, mod: func(m *Message) { m.ValidityPeriod = 39 }, field: "validity_period", rule: "must be between 40 and 21600 seconds, got 39"},
		{name: "Validity40", base: validText, mod: func(m *Message) { m.ValidityPeriod = 40 }},
		{name: "Validity21600", base: validText, mod: func(m *Message) { m.ValidityPeriod = 21600 }},
		{name: "Validity21601", base: validText, mod: func(m *Message) { m.ValidityPeriod = 21601 }, field: "validity_period", rule: "got 21601"},
		{name: "ValidityNegative", base: validText, mod: func(m *Message) { m.ValidityPeriod = -1 }, field: "validity_period"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := tt.base()
			if tt.mod != nil {
				tt.mod(&m)
			}
			err := m.Validate()
			if tt.field == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			var ve *ValidationError
			require.ErrorAs(t, err, &ve)
			// The violated rule is the only one reported.
			fields := map[string]bool{}
			for _, f := range ve.Fields {
				fields[f.Field] = true
			}
			assert.Equal(t, map[string]bool{tt.field: true}, fields, "violations: %v", err)
			assert.True(t, ve.Has(tt.field))
			if tt.rule != "" {
				assert.Contains(t, ve.Fields[0].Rule, tt.rule)
				assert.Contains(t, err.Error(), tt.field+": "+ve.Fields[0].Rule)
			}
		})
	}
}

func TestValidateEveryViolationAtOnce(t *testing.T) {
	t.Parallel()
	m := Message{
		SourceAddr:      strings.Repeat("s", 23),
		DestinationAddr: "+380",
		MessageType:     TypeText,
		Text:            "",
		TextSMS:         strings.Repeat("ж", 71),
		Image:           "https://example.com/a.jpg",
		ButtonCaption:   "Go",
		ButtonAction:    "https://example.com",
		SourceType:      SourcePromotional,
		CallbackURL:     "not a url",
		ValidityPeriod:  30,
	}
	err := m.Validate()
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	var got []string
	for _, f := range ve.Fields {
		got = append(got, f.Field)
	}
	assert.Equal(t, []string{
		"source_addr", "destination_addr", "text",
		"text_sms", "text_sms", // wrong combination (source_type 1) and too long
		"image", "button_caption", "button_action", "callback_url", "validity_period",
	}, got)
	assert.Equal(t, FieldError{"source_addr", "must be at most 20 characters, got 23"}, ve.Fields[0])
	assert.True(t, strings.HasPrefix(err.Error(), "invalid message: source_addr: must be at most 20 characters, got 23; destination_addr: "), err.Error())

	// Invalid type and source: the combination rules still report text_sms.
	m2 := Message{MessageType: 999, SourceType: 7, TextSMS: "x"}
	require.ErrorAs(t, m2.Validate(), &ve)
	got = got[:0]
	for _, f := range ve.Fields {
		got = append(got, f.Field)
	}
	assert.Equal(t, []string{"source_addr", "destination_addr", "message_type", "text", "text_sms", "source_type"}, got)
}

func TestValidationErrorFormat(t *testing.T) {
	t.Parallel()
	e := &ValidationError{Fields: []FieldError{{"a", "r1"}, {"b", "r2"}}}
	assert.Equal(t, "invalid message: a: r1; b: r2", e.Error())
	assert.Equal(t, "a: r1", e.Fields[0].Error())
	assert.False(t, e.Has("c"))
}

func TestSMSLength(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in    string
		units int
		enc   string
		limit int
	}{
		{"", 0, EncodingGSM7, 160},
		{"hello", 5, EncodingGSM7, 160},
		{"€", 2, EncodingGSM7, 160},
		{"a[b]c", 7, EncodingGSM7, 160},
		{"\f", 2, EncodingGSM7, 160},
		{"Ç", 1, EncodingGSM7, 160},
		{"ç", 1, EncodingUCS2, 70},
		{"привет", 6, EncodingUCS2, 70},
		{"😀", 2, EncodingUCS2, 70},
		{"a😀€", 4, EncodingUCS2, 70}, // in UCS-2 the euro sign is one unit
		{"`", 1, EncodingUCS2, 70},   // backtick is not in GSM 03.38
	}
	for _, tt := range tests {
		u, e, l := SMSLength(tt.in)
		assert.Equal(t, []any{tt.units, tt.enc, tt.limit}, []any{u, e, l}, "%q", tt.in)
	}
}

func wireKeys(t *testing.T, m Message) (map[string]any, []byte) {
	t.Helper()
	b, err := m.WireJSON()
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(b, &got))
	return got, b
}

func keysOf(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func TestWireJSON(t *testing.T) {
	t.Parallel()
	t.Run("TextTypeOmitsImageAndButton", func(t *testing.T) {
		t.Parallel()
		m := validText()
		m.Image, m.ButtonCaption, m.ButtonAction = "https://e.com/a.jpg", "Go", "https://e.com"
		got, _ := wireKeys(t, m)
		assert.Equal(t, []string{"destination_addr", "message_type", "source_addr", "source_type", "text"}, keysOf(got))
		assert.Equal(t, "380501234567", got["destination_addr"], "destination as a string")
		assert.Equal(t, float64(106), got["message_type"])
		assert.Equal(t, float64(2), got["source_type"])
	})
	t.Run("TextTypeWithSMSAndOptional", func(t *testing.T) {
		t.Parallel()
		m := validText()
		m.TextSMS, m.CallbackURL, m.ValidityPeriod = "fallback", "https://e.com/cb?a=1&b=2", 40
		got, raw := wireKeys(t, m)
		assert.Equal(t, []string{"callback_url", "destination_addr", "message_type", "source_addr", "source_type", "text", "text_sms", "validity_period"}, keysOf(got))
		assert.Equal(t, float64(40), got["validity_period"])
		assert.Contains(t, string(raw), `"https://e.com/cb?a=1&b=2"`, "no HTML escaping")
		assert.True(t, strings.HasPrefix(string(raw), `{"source_addr":"Custom Company","destination_addr":"380501234567","message_type":106,"text":`), string(raw))
		assert.False(t, strings.HasSuffix(string(raw), "\n"))
	})
	t.Run("ImageTypeOmitsSMS", func(t *testing.T) {
		t.Parallel()
		m := validImage()
		m.TextSMS = "not used by 108"
		got, _ := wireKeys(t, m)
		assert.Equal(t, []string{"button_action", "button_caption", "destination_addr", "image", "message_type", "source_addr", "source_type", "text"}, keysOf(got))
		assert.Equal(t, "https://example.com/images/sale.jpg", got["image"])
	})
	t.Run("TwoWayText", func(t *testing.T) {
		t.Parallel()
		m := validText()
		m.MessageType = TypeTwoWayText
		m.ButtonCaption = "dropped"
		got, raw := wireKeys(t, m)
		assert.NotContains(t, string(raw), "null")
		assert.NotContains(t, got, "button_caption")
	})
	t.Run("NoNullsOrEmptyStrings", func(t *testing.T) {
		t.Parallel()
		_, raw := wireKeys(t, validImage())
		assert.NotContains(t, string(raw), "null")
		assert.NotContains(t, string(raw), `""`)
	})
	t.Run("RoundTripsIntoMessage", func(t *testing.T) {
		t.Parallel()
		m := validImage()
		m.CallbackURL, m.ValidityPeriod = "https://e.com/cb", 3600
		b, err := m.WireJSON()
		require.NoError(t, err)
		var back Message
		require.NoError(t, json.Unmarshal(b, &back))
		assert.Equal(t, m, back)
	})
}
