package worker

import (
	"math"
	"net/url"
	"time"

	"github.com/viberq/viberq/provider"
)

// validityPeriod is what remains of the TTL in whole seconds (rounded up), clamped to
// the provider's 40..21600; a transactional message with text_sms always gets
// provider.SMSValidityPeriod (40), the only value the vendor allows it (package
// provider doc, "Vendor notes"; README, "Where the vendor documentation is silent").
func validityPeriod(m provider.Message, remaining time.Duration) int {
	if m.HasSMSFallback() {
		return provider.SMSValidityPeriod
	}
	s := int(math.Ceil(remaining.Seconds()))
	return min(max(s, provider.MinValidityPeriod), provider.MaxValidityPeriod)
}

// callbackURLFor is the callback_url of message id: the configured one with the
// message ID as the query parameter "id", so a status callback names our message
// without an index lookup (the provider's payload carries only its own message_id).
func callbackURLFor(base, id string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	q := u.Query()
	q.Set("id", id)
	u.RawQuery = q.Encode()
	return u.String()
}
