package worker

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hibiken/asynq"

	"github.com/viberq/viberq/provider"
)

// maxErrorLen caps the error text stored in a record.
const maxErrorLen = 300

func shortErr(s string) *string {
	if len(s) > maxErrorLen {
		s = s[:maxErrorLen]
		for len(s) > 0 && s[len(s)-1]&0xC0 == 0x80 { // keep valid UTF-8
			s = s[:len(s)-1]
		}
	}
	return &s
}

func skip(err error) error { return fmt.Errorf("%w (%w)", err, asynq.SkipRetry) }

// errText is the record's error for a decision: the provider's words when there are.
func errText(d Decision, err error) string {
	var api *provider.APIError
	if errors.As(err, &api) {
		s := strings.TrimSpace(api.Name)
		if api.Message != "" {
			s += ": " + api.Message
		}
		if s != "" {
			if d.HTTPStatus != 0 {
				return fmt.Sprintf("%d %s", d.HTTPStatus, s)
			}
			return s
		}
	}
	if err != nil {
		return err.Error()
	}
	return d.Reason
}

// codeOf is the "code" label of a provider call.
func codeOf(err error) string {
	if err == nil {
		return "200"
	}
	var (
		api *provider.APIError
		re  *provider.ResponseError
		te  *provider.TransportError
		ve  *provider.ValidationError
	)
	switch {
	case errors.As(err, &api):
		return itoa(api.HTTPStatus)
	case errors.As(err, &re):
		return itoa(re.HTTPStatus)
	case errors.As(err, &te):
		return "transport"
	case errors.As(err, &ve):
		return "invalid"
	}
	return "error"
}
