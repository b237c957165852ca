package provider_test

// The conformance table: one row per rule of the vendor's page (the Russian "VIBER +
// SMS API" page; it is not in the repository, so each row quotes the line it comes
// from), run against both the client (package provider) and the simulator
// (provider/dtsim), whose validation is its own reading of the page. Where the page is
// silent the client is strict and the simulator lenient: those rows say so and name
// the simulator's Stats.Lenient kind. README, "Where the vendor documentation is
// silent", lists the same decisions.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/provider/dtsim"
	"github.com/viberq/viberq/provider/dtsim/dtsimtest"
)

const confKey = "conformance-key-1"

// sendRow is one rule about the send-viber body.
type sendRow struct {
	name string
	doc  string // the page's line, quoted (or "silent: …" with the nearest line)
	body string // send-viber JSON as it goes on the wire
	// client is the field the client refuses ("" accepts; "-" the client never sends
	// this body, e.g. destination_addr as a JSON number).
	client string
	// sim is the field the simulator refuses ("" accepts); lenient the Stats.Lenient
	// kind it counts when it accepts where the page is silent.
	sim, lenient string
}

// msg builds a send-viber body from the base text message and overrides (a nil value
// deletes the key). Keys keep the page's order.
func msg(over map[string]any) string {
	base := []struct {
		k string
		v any
	}{
		{"source_addr", "Shop"}, {"destination_addr", "380501234567"}, {"message_type", 106},
		{"text", "Your code is 1234"}, {"text_sms", nil}, {"image", nil}, {"button_caption", nil},
		{"button_action", nil}, {"source_type", 2}, {"callback_url", nil}, {"validity_period", nil},
	}
	var b strings.Builder
	b.WriteByte('{')
	n := 0
	for _, kv := range base {
		v := kv.v
		if o, ok := over[kv.k]; ok {
			v = o
		}
		if v == nil {
			continue
		}
		if n > 0 {
			b.WriteByte(',')
		}
		n++
		k, _ := json.Marshal(kv.k)
		val, _ := json.Marshal(v)
		b.Write(k)
		b.WriteByte(':')
		b.Write(val)
	}
	b.WriteByte('}')
	return b.String()
}

// promo is a valid 108 promotional message with overrides.
func promo(over map[string]any) string {
	m := map[string]any{"message_type": 108, "source_type": 1, "image": "https://cdn.example.com/a.jpg",
		"button_caption": "Join Us", "button_action": "https://example.com/join"}
	for k, v := range over {
		m[k] = v
	}
	return msg(m)
}

var (
	rep = strings.Repeat
	// The vendor's own example, from the English Viber + SMS page (the Russian page's
	// "Пример Viber + SMS" heading is empty): image and button on a 106 transactional.
	vendorExampleViberSMS = `{"source_addr":"Custom Company","destination_addr":8882222200,"message_type":106,"text":"Message content","text_sms":"SMS message content","image":"https://yourdomain.com/images/image.jpg","button_caption":"Join Us","button_action":"https://yourdomain.com/join-us","source_type":2,"callback_url":"https://yourdomain.com/viber-callback","validity_period":40}`
	// The English Viber page's example: 108 promotional with image and button.
	vendorExampleViber = `{"source_addr":"Custom Company","destination_addr":"8882222200","message_type":108,"text":"Message content","image":"https://yourdomain.com/images/image.jpg","button_caption":"Join Us","button_action":"https://yourdomain.com/join-us","source_type":1,"callback_url":"https://yourdomain.com/viber-callback","validity_period":3600}`
	// The same page's "promotional text messages" example uses message_type 225, which
	// no other source lists.
	vendorExample225 = `{"source_addr":"Custom Company","destination_addr":"8882222200","message_type":225,"text":"Message content","source_type":1,"validity_period":3600}`
)

var sendRows = []sendRow{
	{name: "Base", doc: "Отправить Вайбер сообщение / Параметры", body: msg(nil)},
	{name: "SourceAddr20", doc: "source_addr: <= 20 chars - от кого сообщение", body: msg(map[string]any{"source_addr": rep("S", 20)})},
	{name: "SourceAddr21", doc: "source_addr: <= 20 chars - от кого сообщение", body: msg(map[string]any{"source_addr": rep("S", 21)}), client: "source_addr", sim: "source_addr"},
	{name: "SourceAddrEmpty", doc: "Ошибки: Пустой параметр или ошибка проверки параметра (code 1)", body: msg(map[string]any{"source_addr": ""}), client: "source_addr", sim: "source_addr"},
	{name: "Destination15", doc: "destination_addr: <= 20 chars - кому сообщение", body: msg(map[string]any{"destination_addr": rep("3", 15)})},
	// The client holds numbers to E.164 (7..15 digits): stricter than the page's 20.
	{name: "Destination20", doc: "silent: destination_addr: <= 20 chars - кому сообщение (no numbering plan)", body: msg(map[string]any{"destination_addr": rep("3", 20)}), client: "destination_addr"},
	{name: "Destination6", doc: "silent: destination_addr: <= 20 chars - кому сообщение (no minimum)", body: msg(map[string]any{"destination_addr": "380501"}), client: "destination_addr"},
	{name: "Destination21", doc: "destination_addr: <= 20 chars - кому сообщение", body: msg(map[string]any{"destination_addr": rep("3", 21)}), client: "destination_addr", sim: "destination_addr"},
	{name: "DestinationPlus", doc: "silent: destination_addr: <= 20 chars - кому сообщение (no character set)", body: msg(map[string]any{"destination_addr": "+380501234567"}), client: "destination_addr", lenient: "destination_not_digits"},
	{name: "DestinationNumber", doc: "the page's example sends destination_addr as a JSON number", body: `{"source_addr":"Shop","destination_addr":380501234567,"message_type":106,"text":"hi","source_type":2}`, client: "-"},
	{name: "MessageType206", doc: "message_type: 206 только текст (2Way)", body: msg(map[string]any{"message_type": 206, "source_type": 1})},
	{name: "MessageType208", doc: "message_type: 208 текст+изображение+кнопка (двусторонняя)", body: promo(map[string]any{"message_type": 208})},
	{name: "MessageType107", doc: "message_type (тип отправленного сообщения): 106, 108, 206, 208", body: msg(map[string]any{"message_type": 107}), client: "message_type", sim: "message_type"},
	{name: "Text1000", doc: "text: <= 1000 chars - текст Viber сообщения", body: msg(map[string]any{"text": rep("ж", 1000)})},
	{name: "Text1001", doc: "text: <= 1000 chars - текст Viber сообщения", body: msg(map[string]any{"text": rep("ж", 1001)}), client: "text", sim: "text"},
	{name: "TextEmpty", doc: "Ошибки: Пустой параметр или ошибка проверки параметра (code 1)", body: msg(map[string]any{"text": ""}), client: "text", sim: "text"},
	{name: "TextSMSLatin160", doc: "text_sms: <= 160 chars for Latin", body: msg(map[string]any{"text_sms": rep("a", 160)})},
	{name: "TextSMSLatin161", doc: "text_sms: <= 160 chars for Latin", body: msg(map[string]any{"text_sms": rep("a", 161)}), client: "text_sms", sim: "text_sms"},
	{name: "TextSMSUCS2_70", doc: "text_sms: <= 70 chars for UCS-2 (16-bit)", body: msg(map[string]any{"text_sms": rep("ж", 70)})},
	{name: "TextSMSUCS2_71", doc: "text_sms: <= 70 chars for UCS-2 (16-bit)", body: msg(map[string]any{"text_sms": rep("ж", 71)}), client: "text_sms", sim: "text_sms"},
	{name: "TextSMSEmoji36", doc: "text_sms: <= 70 chars for UCS-2 (16-bit): an emoji is two 16-bit units", body: msg(map[string]any{"text_sms": rep("😀", 36)}), client: "text_sms", sim: "text_sms"},
	{name: "TextSMSEuro81", doc: "silent: \"Latin\" is not defined; GSM-7 counts € as 2", body: msg(map[string]any{"text_sms": rep("€", 81)}), client: "text_sms", lenient: "text_sms_latin_count"},
	{name: "TextSMSPromotional", doc: "text_sms: ... (только для транзакционных сообщений)", body: msg(map[string]any{"text_sms": "Code 1234", "source_type": 1}), client: "text_sms", sim: "text_sms"},
	{name: "TextSMSOn206", doc: "silent: text_sms (только для транзакционных сообщений) names no message_type", body: msg(map[string]any{"text_sms": "Code 1234", "message_type": 206}), client: "text_sms", lenient: "text_sms_message_type"},
	{name: "TextSMSValidity40", doc: "transactional message + SMS - TTL всего 40 секунд", body: msg(map[string]any{"text_sms": "Code 1234", "validity_period": 40})},
	{name: "TextSMSValidity3600", doc: "transactional message + SMS - TTL всего 40 секунд", body: msg(map[string]any{"text_sms": "Code 1234", "validity_period": 3600}), client: "validity_period", sim: "validity_period"},
	{name: "TextSMSValidity41", doc: "transactional message + SMS - TTL всего 40 секунд", body: msg(map[string]any{"text_sms": "Code 1234", "validity_period": 41}), client: "validity_period", sim: "validity_period"},
	{name: "Validity39", doc: "мин. TTL 40 секунд макс. TTL 21600 секунд (6 часов)", body: msg(map[string]any{"validity_period": 39}), client: "validity_period", sim: "validity_period"},
	{name: "Validity40", doc: "мин. TTL 40 секунд макс. TTL 21600 секунд (6 часов)", body: msg(map[string]any{"validity_period": 40})},
	{name: "Validity21600", doc: "мин. TTL 40 секунд макс. TTL 21600 секунд (6 часов)", body: promo(map[string]any{"validity_period": 21600})},
	{name: "Validity21601", doc: "мин. TTL 40 секунд макс. TTL 21600 секунд (6 часов)", body: promo(map[string]any{"validity_period": 21601}), client: "validity_period", sim: "validity_period"},
	{name: "ValidityAbsent", doc: "В случае, если TTL не был указан ... в течение 1 дня", body: promo(nil)},
	{name: "ImageJPEG", doc: "image: jpg or jpeg (тип mime — изображение/jpeg)", body: promo(map[string]any{"image": "https://cdn.example.com/a.JPEG"})},
	{name: "ImagePNG", doc: "image: png (тип mime — image/png)", body: promo(map[string]any{"image": "https://cdn.example.com/a.png?v=2"})},
	{name: "ImageGIF", doc: "image: jpg or jpeg ... png: a .gif URL names another type", body: promo(map[string]any{"image": "https://cdn.example.com/a.gif"}), client: "image", sim: "image"},
	{name: "ImageCDN", doc: "image: Правильный URL-адрес с изображением (the type is the file's, not the URL's)", body: promo(map[string]any{"image": "https://cdn.example.com/img?id=5"}), lenient: "image_type_unknown"},
	{name: "ImageRelative", doc: "image: Правильный URL-адрес", body: promo(map[string]any{"image": "/a.jpg"}), client: "image", sim: "image"},
	{name: "ImageFTP", doc: "silent: Правильный URL-адрес names no scheme", body: promo(map[string]any{"image": "ftp://cdn.example.com/a.jpg"}), client: "image", lenient: "url_scheme"},
	{name: "ButtonCaption30", doc: "button_caption: <= 30 chars - надпись на кнопке", body: promo(map[string]any{"button_caption": rep("b", 30)})},
	{name: "ButtonCaption31", doc: "button_caption: <= 30 chars - надпись на кнопке", body: promo(map[string]any{"button_caption": rep("b", 31)}), client: "button_caption", sim: "button_caption"},
	{name: "ButtonActionRelative", doc: "button_action: Правильный URL для перехода при нажатии кнопки", body: promo(map[string]any{"button_action": "join"}), client: "button_action", sim: "button_action"},
	{name: "ImageButtonPartial", doc: "silent: 108 текст+картинка+кнопка does not say which parts are required", body: promo(map[string]any{"button_caption": nil}), client: "button_caption", lenient: "image_button_incomplete"},
	{name: "ImageOnText106", doc: "silent: 106 только текст, yet the page's example sends image and button with it", body: msg(map[string]any{"image": "https://cdn.example.com/a.jpg"}), client: "image", lenient: "image_button_on_text_type"},
	{name: "SourceType3", doc: "source_type: promotion message - 1, transactional message - 2", body: msg(map[string]any{"source_type": 3}), client: "source_type", sim: "source_type"},
	{name: "Transactional108", doc: "transactional message (текстовое сообщение) – 2", body: promo(map[string]any{"source_type": 2}), client: "source_type", sim: "source_type"},
	{name: "CallbackURL", doc: "callback_url: Правильный URL для обратного вызова статуса сообщения", body: msg(map[string]any{"callback_url": "https://example.com/cb?x=1"})},
	{name: "CallbackRelative", doc: "callback_url: Правильный URL для обратного вызова статуса сообщения", body: msg(map[string]any{"callback_url": "cb"}), client: "callback_url", sim: "callback_url"},
	{name: "VendorExampleViberSMS", doc: "the vendor's Viber + SMS example (English page)", body: vendorExampleViberSMS, client: "-", lenient: "image_button_on_text_type"},
	{name: "VendorExampleViber", doc: "the vendor's Viber example (English page)", body: vendorExampleViber},
	{name: "VendorExample225", doc: "the vendor's Viber page example with message_type 225, listed nowhere else", body: vendorExample225, client: "message_type", sim: "message_type"},
}

func newSim(t *testing.T, mod func(*dtsim.Config)) (*dtsim.Sim, string) {
	t.Helper()
	cfg := dtsim.Config{Key: confKey, Balance: dtsim.Unlimited}
	if mod != nil {
		mod(&cfg)
	}
	sim, srv := dtsimtest.NewServer(t, cfg)
	return sim, srv.URL + dtsim.BasePath
}

func newClient(t *testing.T, base string) *provider.Client {
	t.Helper()
	c, err := provider.New(base, confKey, provider.WithTimeout(5*time.Second))
	require.NoError(t, err)
	return c
}

// clientVerdict is the field the client refuses, "" when it accepts.
func clientVerdict(t *testing.T, body string) string {
	t.Helper()
	var m provider.Message
	require.NoError(t, json.Unmarshal([]byte(body), &m))
	err := m.Validate()
	if err == nil {
		return ""
	}
	var ve *provider.ValidationError
	require.ErrorAs(t, err, &ve)
	return ve.Fields[0].Field
}

// postRaw sends body to the simulator with the client's auth header.
func postRaw(t *testing.T, url, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.SetBasicAuth(confKey, "") // the page's PHP sample: CURLOPT_USERPWD "$userHashKey" (base64 of "key:")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, b
}

func TestConformanceSend(t *testing.T) {
	t.Parallel()
	for _, shape := range []dtsim.Shape{dtsim.ShapeDoc, dtsim.ShapeSDK} {
		sim, base := newSim(t, func(c *dtsim.Config) { c.Shape = shape })
		client := newClient(t, base)
		for _, row := range sendRows {
			t.Run(string(shape)+"/"+row.name, func(t *testing.T) {
				// The client.
				if row.client != "-" {
					assert.Equal(t, row.client, clientVerdict(t, row.body), "client, rule %q", row.doc)
				}
				// The simulator, on the raw body.
				before := sim.Stats().Lenient[row.lenient]
				status, hdr, b := postRaw(t, base+"/send-viber", row.body)
				if row.sim == "" {
					require.Equal(t, http.StatusOK, status, "simulator, rule %q: %s", row.doc, b)
					assert.Contains(t, string(b), `"message_id":`)
				} else {
					require.Equal(t, http.StatusBadRequest, status, "simulator, rule %q: %s", row.doc, b)
					assert.Equal(t, row.sim, hdr.Get(dtsim.HeaderInvalidParameter), "simulator, rule %q", row.doc)
					want := `{"message":"Пустой параметр или ошибка проверки параметра","code":1,"status":400}`
					if shape == dtsim.ShapeSDK {
						want = `{"name":"Invalid Parameter: ` + row.sim + `","message":"Empty parameter or parameter validation error","code":1,"status":400}`
					}
					assert.Equal(t, want, string(b))
				}
				if row.lenient != "" {
					assert.Greater(t, sim.Stats().Lenient[row.lenient], before, "simulator notes the silent case %s", row.lenient)
				}
				// End to end: what the client accepts, it sends, and the simulator takes.
				if row.client == "" {
					var m provider.Message
					require.NoError(t, json.Unmarshal([]byte(row.body), &m))
					res, err := client.Send(context.Background(), m)
					if row.sim == "" {
						require.NoError(t, err)
						assert.Positive(t, int64(res.MessageID))
					} else {
						var inv *provider.InvalidParameterError
						require.ErrorAs(t, err, &inv)
					}
				}
			})
		}
	}
}

// TestConformanceWire compares the request the client puts on the wire, captured by
// the simulator, with hand-written JSON: one per message type.
func TestConformanceWire(t *testing.T) {
	t.Parallel()
	sim, base := newSim(t, func(c *dtsim.Config) { c.Shape = dtsim.ShapeDoc })
	client := newClient(t, base)
	rows := []struct {
		name string
		m    provider.Message
		want string
	}{
		{"106", provider.Message{SourceAddr: "Shop", DestinationAddr: "380501234567", MessageType: 106, Text: "Hi & bye", SourceType: 2, ValidityPeriod: 3600},
			`{"source_addr":"Shop","destination_addr":"380501234567","message_type":106,"text":"Hi & bye","source_type":2,"validity_period":3600}`},
		{"106+SMS", provider.Message{SourceAddr: "Shop", DestinationAddr: "380501234567", MessageType: 106, Text: "Your code is 1234", TextSMS: "Code 1234", SourceType: 2, CallbackURL: "https://example.com/cb?id=a&t=1", ValidityPeriod: 40},
			`{"source_addr":"Shop","destination_addr":"380501234567","message_type":106,"text":"Your code is 1234","text_sms":"Code 1234","source_type":2,"callback_url":"https://example.com/cb?id=a&t=1","validity_period":40}`},
		{"108", provider.Message{SourceAddr: "Shop", DestinationAddr: "380501234567", MessageType: 108, Text: "Sale", Image: "https://cdn.example.com/img?id=5", ButtonCaption: "Open", ButtonAction: "https://example.com/sale", SourceType: 1, ValidityPeriod: 21600},
			`{"source_addr":"Shop","destination_addr":"380501234567","message_type":108,"text":"Sale","image":"https://cdn.example.com/img?id=5","button_caption":"Open","button_action":"https://example.com/sale","source_type":1,"validity_period":21600}`},
		{"206", provider.Message{SourceAddr: "Shop", DestinationAddr: "380501234567", MessageType: 206, Text: "Rate us 1-5", SourceType: 1, ValidityPeriod: 40},
			`{"source_addr":"Shop","destination_addr":"380501234567","message_type":206,"text":"Rate us 1-5","source_type":1,"validity_period":40}`},
		{"208", provider.Message{SourceAddr: "Shop", DestinationAddr: "380501234567", MessageType: 208, Text: "Новинка", Image: "https://cdn.example.com/a.png", ButtonCaption: "Смотреть", ButtonAction: "https://example.com/n", SourceType: 1},
			`{"source_addr":"Shop","destination_addr":"380501234567","message_type":208,"text":"Новинка","image":"https://cdn.example.com/a.png","button_caption":"Смотреть","button_action":"https://example.com/n","source_type":1}`},
	}
	for _, row := range rows {
		_, err := client.Send(context.Background(), row.m)
		require.NoError(t, err, row.name)
		reqs := sim.Requests()
		last := reqs[len(reqs)-1]
		assert.Equal(t, row.want, string(last.Body), row.name)
		// "curl_init('https://web.it-decision.com/v1/api/send-viber')", "CURLOPT_POST",
		// "Content-Type: application/json", "Базовая авторизация".
		assert.Equal(t, http.MethodPost, last.Method, row.name)
		assert.Equal(t, "/v1/api/send-viber", last.Path, row.name)
		assert.Equal(t, "application/json", last.Header.Get("Content-Type"), row.name)
		assert.True(t, strings.HasPrefix(last.Header.Get("Authorization"), "Basic "), row.name)
	}
	assert.Equal(t, "https://web.it-decision.com/v1/api", provider.DefaultBaseURL, "curl_init('https://web.it-decision.com/v1/api/send-viber')")
	assert.Equal(t, 30*time.Second, provider.DefaultTimeout, "curl_setopt($ch, CURLOPT_TIMEOUT, 30)")
}

// errorRow is one row of the page's "Ошибки" table.
type errorRow struct {
	doc     string // the page's message
	code    int
	status  int
	trigger func(t *testing.T, sim *dtsim.Sim, ep dtsim.Endpoint) // makes the next request to ep fail so
	is      func(error) bool
}

func is[T error](err error) bool {
	var target T
	return errors.As(err, &target)
}

var errorRows = []errorRow{
	{"Rate limit превышен", 0, 429, func(t *testing.T, s *dtsim.Sim, ep dtsim.Endpoint) {
		require.NoError(t, s.InjectFault(ep, dtsim.FaultRateLimited, 1))
	}, is[*provider.RateLimitError]},
	{"Пустой параметр или ошибка проверки параметра", 1, 400, nil, is[*provider.InvalidParameterError]},
	{"Сервер столкнулся с непредвиденной ситуацией, из-за которой он не смог выполнить запрос", 2, 500, func(t *testing.T, s *dtsim.Sim, ep dtsim.Endpoint) {
		require.NoError(t, s.InjectFault(ep, dtsim.FaultServerError, 1))
	}, is[*provider.ServerError]},
	{"Баланс пользователя пуст", 3, 402, func(_ *testing.T, s *dtsim.Sim, _ dtsim.Endpoint) { s.SetBalance(0) }, is[*provider.BalanceError]},
}

// TestConformanceErrors: every error of the page's table, in both transports (the
// matching HTTP status, or HTTP 200) and both body shapes (the page's message, code,
// status; the SDKs' with name), on both endpoints, is the typed error, never a
// success, a Viber status or an ambiguous answer.
func TestConformanceErrors(t *testing.T) {
	t.Parallel()
	valid := provider.Message{SourceAddr: "Shop", DestinationAddr: "380501234567", MessageType: 106, Text: "hi", SourceType: 2}
	for _, shape := range []dtsim.Shape{dtsim.ShapeDoc, dtsim.ShapeSDK} {
		for _, style := range []dtsim.ErrorStyle{dtsim.ErrorStyleStatus, dtsim.ErrorStyleBody200} {
			for _, row := range errorRows {
				for _, ep := range []dtsim.Endpoint{dtsim.EndpointSend, dtsim.EndpointStatus} {
					if row.code == 3 && ep == dtsim.EndpointStatus {
						continue // a status query takes no balance
					}
					name := string(shape) + "/" + string(style) + "/" + string(ep) + "/" + row.doc
					t.Run(name, func(t *testing.T) {
						t.Parallel()
						sim, base := newSim(t, func(c *dtsim.Config) { c.Shape, c.ErrorStyle = shape, style })
						client := newClient(t, base)
						res, err := client.Send(context.Background(), valid)
						require.NoError(t, err)
						var callErr error
						switch {
						case ep == dtsim.EndpointSend && row.trigger == nil:
							// The client never sends a body the simulator refuses: send one raw.
							status, _, b := postRaw(t, base+"/send-viber", msg(map[string]any{"source_addr": ""}))
							if style == dtsim.ErrorStyleBody200 {
								require.Equal(t, http.StatusOK, status)
							}
							callErr = decodeWith(t, status, b)
						case ep == dtsim.EndpointSend:
							row.trigger(t, sim, ep)
							_, callErr = client.Send(context.Background(), valid)
						case row.trigger == nil:
							_, callErr = client.Status(context.Background(), res.MessageID+1000) // unknown id: code 1
						default:
							row.trigger(t, sim, ep)
							_, callErr = client.Status(context.Background(), res.MessageID)
						}
						require.Error(t, callErr)
						assert.True(t, row.is(callErr), "%T: %v", callErr, callErr)
						assert.False(t, provider.MaybeSent(callErr), "a vendor error is an answer, not an ambiguity: %v", callErr)
						var api *provider.APIError
						require.ErrorAs(t, callErr, &api)
						assert.Equal(t, row.code, api.Code)
						assert.Equal(t, row.status, api.Status)
						if shape == dtsim.ShapeDoc {
							assert.Equal(t, row.doc, api.Message)
							assert.Empty(t, api.Name)
						}
					})
				}
			}
		}
	}
}

// decodeWith feeds a raw answer through the client by replaying it from a one-shot
// server.
func decodeWith(t *testing.T, status int, body []byte) error {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	_, err := newClient(t, srv.URL).Send(context.Background(), provider.Message{SourceAddr: "Shop", DestinationAddr: "380501234567", MessageType: 106, Text: "hi", SourceType: 2})
	return err
}

// TestConformanceStatuses: the page's status tables, as the client reads them, and the
// simulator in ShapeDoc emitting only the codes the page lists.
func TestConformanceStatuses(t *testing.T) {
	t.Parallel()
	viber := []struct {
		doc           string
		code          provider.ViberStatus
		final, failed bool
	}{
		{"Статусы сообщений Вайбер: delivered 1", 1, true, false},
		{"Статусы сообщений Вайбер: error 2", 2, true, true},
		{"Статусы сообщений Вайбер: rejected 3", 3, true, true},
		{"Статусы сообщений Вайбер: undelivered 4", 4, true, true},
		{"Статусы сообщений Вайбер: pending 5", 5, false, false},
		{"Статусы сообщений Вайбер: unknown 20", 20, false, false},
	}
	for _, v := range viber {
		assert.Equal(t, v.final, v.code.Final(), v.doc)
		assert.Equal(t, v.failed, v.code.Failed(), v.doc)
		assert.True(t, v.code.Listed(), v.doc)
	}
	sms := []struct {
		doc  string
		code provider.SMSStatus
		want provider.Outcome // after a failed Viber leg with text_sms
	}{
		{"Статусы SMS сообщений: undeliverable 5", 5, provider.OutcomeUndelivered},
		{"Статусы SMS сообщений: expired 3", 3, provider.OutcomeUndelivered},
		{"silent: no SMS \"delivered\" on the page; the SDKs use 2", 2, provider.OutcomeDeliveredSMS},
		{"silent: an unlisted SMS code (SMPP 1, 4, 7, 8, or any other) is pending, never final", 7, provider.OutcomePending},
		{"silent: an unlisted SMS code is pending, never final", 8, provider.OutcomePending},
		{"silent: an unlisted SMS code is pending, never final", 4, provider.OutcomePending},
	}
	for _, s := range sms {
		st := s.code
		assert.Equal(t, s.want, provider.Combine(provider.ViberUndelivered, &st, true), s.doc)
	}

	// The simulator in ShapeDoc: a message walks only through listed codes, and an SMS
	// leg shows no status until final. SMSDeliveredCode 7 stands for a "delivered" the
	// page does not list: the client must keep the message pending, never undelivered.
	now := time.Unix(1_800_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	_, base := newSim(t, func(c *dtsim.Config) {
		c.Shape, c.Now, c.SMSDeliveredCode = dtsim.ShapeDoc, clock, 7
		c.PendingAfter, c.DeliverMin, c.DeliverMax = time.Second, 2*time.Second, 2*time.Second
		c.ViberFailShare, c.SMSDelayMin, c.SMSDelayMax = 1, 4*time.Second, 4*time.Second
	})
	client := newClient(t, base)
	res, err := client.Send(context.Background(), provider.Message{SourceAddr: "Shop", DestinationAddr: "380501234567", MessageType: 106, Text: "hi", TextSMS: "hi", SourceType: 2, ValidityPeriod: 40})
	require.NoError(t, err)
	var seen []string
	for i := 0; i < 8; i++ {
		st, err := client.Status(context.Background(), res.MessageID)
		require.NoError(t, err)
		assert.True(t, st.Status.Listed() && st.Status != provider.ViberSent, "ShapeDoc emits only the page's Viber codes, got %d", st.Status)
		if st.SMSStatus != nil {
			seen = append(seen, st.SMSStatus.String())
			assert.Equal(t, provider.OutcomePending, st.Outcome(true), "an unlisted SMS code never ends the message")
		} else {
			assert.False(t, st.Outcome(true).Final())
		}
		advance(time.Second)
	}
	assert.Contains(t, seen, "unknown", "the delivered SMS leg reported the unlisted code 7")
}

// TestConformanceReplies: the page's two-way fields ("Получить сообщение от
// пользователя для двусторонних сообщений": message_token, phone_number, time,
// message: text, tracking_data: tracking_id) in every plausible shape, and the
// simulator's own replies in both shapes, are kept with their tracking id.
func TestConformanceReplies(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		`{"message_token":44444444444444,"phone_number":"972512222222","time":1457764197627,"message":{"text":"Да","tracking_data":{"tracking_id":100035}}}`,
		`{"message_token":44444444444444,"phone_number":"972512222222","time":1457764197627,"message":{"text":"Да","tracking_data":"tracking_id:100035"}}`,
		`{"message_token":"44444444444444","phone_number":972512222222,"time":"1457764197","text":"Да","tracking_data":{"tracking_id":"100035"}}`,
		`{"message_token":44444444444444,"phone_number":"972512222222","time":"2016-03-12 06:29:57","message":"Да","tracking_id":100035}`,
	} {
		r, err := provider.ParseReply("application/json", []byte(body))
		require.NoError(t, err, body)
		assert.Equal(t, "44444444444444", r.MessageToken, body)
		assert.Equal(t, "972512222222", r.PhoneNumber, body)
		assert.Equal(t, "Да", r.Text, body)
		assert.Equal(t, "100035", r.TrackingID, body)
		assert.Equal(t, 2016, r.Time.Year(), body)
		assert.Empty(t, r.Unparsed, body)
	}
	for _, shape := range []dtsim.Shape{dtsim.ShapeDoc, dtsim.ShapeSDK} {
		got := make(chan []byte, 2)
		inbound := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			got <- b
		}))
		t.Cleanup(inbound.Close)
		_, base := newSim(t, func(c *dtsim.Config) {
			c.Shape, c.ReplyURL, c.ReplyShare = shape, inbound.URL, 1
		})
		client := newClient(t, base)
		res, err := client.Send(context.Background(), provider.Message{SourceAddr: "Shop", DestinationAddr: "380501234567", MessageType: 206, Text: "Rate us", SourceType: 1, CallbackURL: inbound.URL + "/status"})
		require.NoError(t, err)
		var reply, status bool
		for !reply || !status {
			select {
			case b := <-got:
				if provider.IsReply(b) {
					r, err := provider.ParseReply("application/json", b)
					require.NoError(t, err, "%s", b)
					assert.Equal(t, res.MessageID.String(), r.TrackingID, "%s: %s", shape, b)
					assert.Empty(t, r.Unparsed)
					reply = true
				} else {
					cb, err := provider.ParseStatusCallback("application/json", b)
					require.NoError(t, err, "%s", b)
					assert.Equal(t, res.MessageID, cb.MessageID)
					assert.Equal(t, provider.ViberDelivered, cb.Status)
					status = true
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: no reply or status callback from the simulator", shape)
			}
		}
	}
}
