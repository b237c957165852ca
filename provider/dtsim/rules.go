package dtsim

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// This file is the simulator's own reading of the vendor's page ("Отправить Вайбер
// сообщение", "Параметры"): what a send-viber body must hold for the provider to accept
// it. It is written from the page's lines, quoted next to each rule, and deliberately
// shares nothing with package provider's validation: the client's rules and these are
// two readings of one page, and the conformance test (provider/conformance_test.go)
// makes them meet. Where the page is silent the simulator accepts and notes it
// (Sim.lenient); the client is strict there.

// sendRequest is a decoded send-viber body. Integers the body leaves out are 0.
type sendRequest struct {
	SourceAddr      string
	DestinationAddr string
	MessageType     int
	Text            string
	TextSMS         string
	Image           string
	ButtonCaption   string
	ButtonAction    string
	SourceType      int
	CallbackURL     string
	ValidityPeriod  int // 0: absent
}

// twoWay reports 206/208 ("(2Way)", "(двусторонняя)").
func (m sendRequest) twoWay() bool { return m.MessageType == 206 || m.MessageType == 208 }

// Silent-case names: Stats.Lenient keys and log lines.
const (
	silentIntAsString      = "integer_as_string"         // JSON types are not given
	silentDestNotDigits    = "destination_not_digits"    // "<= 20 chars - кому сообщение" only
	silentTextSMSType      = "text_sms_message_type"     // text_sms: "только для транзакционных"; message type not named
	silentImageOnText      = "image_button_on_text_type" // the page's own example sends them on 106
	silentImageButtonParts = "image_button_incomplete"   // 108/208: which of image/button are required is not said
	silentURLScheme        = "url_scheme"                // "Правильный URL": scheme not named
	silentTextSMSLatin     = "text_sms_latin_count"      // "Latin" and how to count it not defined
	silentImageType        = "image_type_unknown"        // jpg/png is a property of the file, unseen
)

// decodeSend decodes a send-viber body field by field, so a wrong JSON type names its
// field. Unknown fields are ignored, null is "absent". field is the first undecodable
// field ("body" when the body is not a JSON object); notes lists silent cases met.
func decodeSend(body []byte) (m sendRequest, field string, notes []string) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return m, "body", nil
	}
	get := func(name string) (json.RawMessage, bool) {
		raw, ok := obj[name]
		if !ok || string(raw) == "null" {
			return nil, false
		}
		return raw, true
	}
	str := func(name string, dst *string) bool {
		raw, ok := get(name)
		return !ok || json.Unmarshal(raw, dst) == nil
	}
	integer := func(name string, dst *int) bool {
		raw, ok := get(name)
		if !ok {
			return true
		}
		if json.Unmarshal(raw, dst) == nil {
			return true
		}
		var s string
		if json.Unmarshal(raw, &s) == nil && digitsOnly([]byte(s)) && len(s) < 10 {
			*dst, _ = strconv.Atoi(s)
			notes = append(notes, silentIntAsString)
			return true
		}
		return false
	}
	dest := func() bool {
		raw, ok := get("destination_addr")
		switch {
		case !ok:
			return true
		case raw[0] == '"':
			return json.Unmarshal(raw, &m.DestinationAddr) == nil
		case digitsOnly(raw):
			// The page's example sends destination_addr 8882222200, a JSON number.
			m.DestinationAddr = string(raw)
			return true
		}
		return false
	}
	switch {
	case !str("source_addr", &m.SourceAddr):
		return m, "source_addr", notes
	case !dest():
		return m, "destination_addr", notes
	case !integer("message_type", &m.MessageType):
		return m, "message_type", notes
	case !str("text", &m.Text):
		return m, "text", notes
	case !str("text_sms", &m.TextSMS):
		return m, "text_sms", notes
	case !str("image", &m.Image):
		return m, "image", notes
	case !str("button_caption", &m.ButtonCaption):
		return m, "button_caption", notes
	case !str("button_action", &m.ButtonAction):
		return m, "button_action", notes
	case !integer("source_type", &m.SourceType):
		return m, "source_type", notes
	case !str("callback_url", &m.CallbackURL):
		return m, "callback_url", notes
	case !integer("validity_period", &m.ValidityPeriod):
		return m, "validity_period", notes
	}
	return m, "", notes
}

// checkSend applies the page's rules in the page's field order and returns the first
// refused field ("" when the message is accepted) and the silent cases met on the way.
// A refusal is answered "Пустой параметр или ошибка проверки параметра" (code 1).
func checkSend(m sendRequest) (field string, notes []string) {
	note := func(n string) { notes = append(notes, n) }
	chars := utf8.RuneCountInString

	// "source_addr: <= 20 chars - от кого сообщение"; "Пустой параметр" makes an empty
	// parameter an error.
	if m.SourceAddr == "" || chars(m.SourceAddr) > 20 {
		return "source_addr", notes
	}
	// "destination_addr: <= 20 chars - кому сообщение". The page says nothing about the
	// characters (its example is a JSON number); anything else is noted.
	if m.DestinationAddr == "" || chars(m.DestinationAddr) > 20 {
		return "destination_addr", notes
	}
	if !digitsOnly([]byte(m.DestinationAddr)) {
		note(silentDestNotDigits)
	}
	// "message_type: 106 только текст / 108 текст+картинка+кнопка / 206 только текст
	// (2Way) / 208 текст+изображение+кнопка (двусторонняя)".
	imageType := false
	switch m.MessageType {
	case 106, 206:
	case 108, 208:
		imageType = true
	default:
		return "message_type", notes
	}
	// "text: <= 1000 chars - текст Viber сообщения".
	if m.Text == "" || chars(m.Text) > 1000 {
		return "text", notes
	}
	// "text_sms: <= 70 chars for UCS-2 (16-bit) and <= 160 chars for Latin -
	// альтернативный текст SMS ... (только для транзакционных сообщений)".
	if m.TextSMS != "" {
		if m.SourceType != 2 {
			return "text_sms", notes
		}
		if m.MessageType != 106 {
			note(silentTextSMSType)
		}
		if latin(m.TextSMS) {
			if chars(m.TextSMS) > 160 {
				return "text_sms", notes
			}
			if strings.ContainsFunc(m.TextSMS, func(r rune) bool { return r > 0x7E || strings.ContainsRune("{}[]~^|\\`", r) }) {
				note(silentTextSMSLatin) // counted one per character; SMS alphabets differ
			}
		} else if len(utf16.Encode([]rune(m.TextSMS))) > 70 {
			return "text_sms", notes
		}
	}
	// "image: jpg or jpeg (тип mime — изображение/jpeg) ... png (тип mime — image/png),
	// максимальное разрешение 400x400 пикселей" and "Правильный URL-адрес".
	if m.Image != "" {
		ok, scheme := validURL(m.Image)
		if !ok {
			return "image", notes
		}
		if !scheme {
			note(silentURLScheme)
		}
		switch imageExt(m.Image) {
		case "jpg", "jpeg", "png":
		case "gif", "webp", "bmp", "svg", "tif", "tiff", "heic", "heif", "avif", "ico":
			return "image", notes // another image type, named by the URL
		default:
			note(silentImageType)
		}
	}
	// "button_caption: <= 30 chars - надпись на кнопке".
	if chars(m.ButtonCaption) > 30 {
		return "button_caption", notes
	}
	// "button_action: Правильный URL для перехода при нажатии кнопки".
	if m.ButtonAction != "" {
		ok, scheme := validURL(m.ButtonAction)
		if !ok {
			return "button_action", notes
		}
		if !scheme {
			note(silentURLScheme)
		}
	}
	if !imageType && (m.Image != "" || m.ButtonCaption != "" || m.ButtonAction != "") {
		note(silentImageOnText)
	}
	if imageType && (m.Image == "" || m.ButtonCaption == "" || m.ButtonAction == "") {
		note(silentImageButtonParts)
	}
	// "source_type: promotion message (сообщение может быть с текстом, изображением и
	// кнопкой) - 1; transactional message (текстовое сообщение) – 2".
	switch m.SourceType {
	case 1:
	case 2:
		if imageType {
			return "source_type", notes // transactional is a text message
		}
	default:
		return "source_type", notes
	}
	// "callback_url: Правильный URL для обратного вызова статуса сообщения".
	if m.CallbackURL != "" {
		ok, scheme := validURL(m.CallbackURL)
		if !ok {
			return "callback_url", notes
		}
		if !scheme {
			note(silentURLScheme)
		}
	}
	// "validity_period: ... мин. TTL 40 секунд макс. TTL 21600 секунд (6 часов)" for
	// promotion and transactional messages; "transactional message + SMS - TTL всего
	// 40 секунд". Absent: "Viber будет пытаться доставить сообщение в течение 1 дня".
	if m.ValidityPeriod != 0 {
		if m.ValidityPeriod < 40 || m.ValidityPeriod > 21600 {
			return "validity_period", notes
		}
		if m.TextSMS != "" && m.SourceType == 2 && m.ValidityPeriod != 40 {
			return "validity_period", notes
		}
	}
	return "", notes
}

// latin reports whether s is "Latin" text for the page's 160-character limit. The page
// does not define it; the simulator reads it generously: every character is in
// Latin-1, or is one of the few other characters an SMS alphabet commonly has (€ and
// Greek capitals).
func latin(s string) bool {
	for _, r := range s {
		if r > 0xFF && !strings.ContainsRune("€ΔΦΓΛΩΠΨΣΘΞ", r) {
			return false
		}
	}
	return true
}

// validURL reports whether s is an absolute URL with a host ("Правильный URL"), and
// whether its scheme is http or https (the page names none).
func validURL(s string) (ok, httpScheme bool) {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return false, false
	}
	return true, u.Scheme == "http" || u.Scheme == "https"
}

// imageExt returns the lower-case extension of the URL path's last segment, "" if none.
func imageExt(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	seg := u.Path[strings.LastIndexByte(u.Path, '/')+1:]
	if i := strings.LastIndexByte(seg, '.'); i >= 0 {
		return strings.ToLower(seg[i+1:])
	}
	return ""
}
