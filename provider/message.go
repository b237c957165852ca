package provider

// MessageType is the vendor's message_type.
type MessageType int

// Message types (vendor notes: fields and limits). 206 and 208 are two-way, gated by
// VIBERQ_TWO_WAY upstream (README, Settings).
const (
	TypeText                  MessageType = 106 // text only
	TypeTextImageButton       MessageType = 108 // text + image + button
	TypeTwoWayText            MessageType = 206 // text only, two-way
	TypeTwoWayTextImageButton MessageType = 208 // text + image + button, two-way
)

// SourceType is the vendor's source_type.
type SourceType int

// Source types (vendor notes: fields and limits).
const (
	SourcePromotional   SourceType = 1
	SourceTransactional SourceType = 2
)

// Limits (vendor notes: fields and limits, TTL).
const (
	MaxSourceAddrLen = 20
	// MinDestinationLen and MaxDestinationLen bound destination_addr, an international
	// number without '+'. The numbering plans decide both ends: ITU-T E.164 caps an
	// international number at 15 digits (country code included), so anything longer
	// is not a number; the shortest numbers in service are 7 digits, a 3-digit country
	// code with 4-digit subscriber numbers (Niue +683, Tokelau +690). Shorter input is
	// a national or short code, or a typo ("1"), that would only fail at the provider
	// after using up a send.
	MinDestinationLen   = 7
	MaxDestinationLen   = 15
	MaxTextLen          = 1000
	MaxButtonCaptionLen = 30
	MaxSMSGSM7Len       = 160   // septets, extension characters count 2
	MaxSMSUCS2Len       = 70    // UTF-16 code units
	MinValidityPeriod   = 40    // seconds
	MaxValidityPeriod   = 21600 // seconds (6 h)
	// SMSValidityPeriod is the one validity_period of a transactional message with
	// text_sms (the vendor: "transactional message + SMS - TTL всего 40 секунд").
	SMSValidityPeriod = 40 // seconds
)

// Message is one send-viber request. Field names and JSON tags are the vendor's;
// the same JSON is used in viberq's task payload (tasks.SendArgs.Message), so apps in
// other languages can write it.
//
// Only the fields that MessageType uses go on the wire (vendor notes: fields and limits): see WireJSON.
type Message struct {
	SourceAddr      string      `json:"source_addr"`
	DestinationAddr string      `json:"destination_addr"` // digits only, international format, no '+' (vendor notes: fields and limits)
	MessageType     MessageType `json:"message_type"`
	Text            string      `json:"text"`
	TextSMS         string      `json:"text_sms,omitempty"`
	Image           string      `json:"image,omitempty"`
	ButtonCaption   string      `json:"button_caption,omitempty"`
	ButtonAction    string      `json:"button_action,omitempty"`
	SourceType      SourceType  `json:"source_type"`
	CallbackURL     string      `json:"callback_url,omitempty"`
	ValidityPeriod  int         `json:"validity_period,omitempty"` // seconds, 40..21600
}

// HasSMSFallback reports whether the message carries a text_sms (Viber + SMS).
func (m Message) HasSMSFallback() bool { return m.TextSMS != "" }
