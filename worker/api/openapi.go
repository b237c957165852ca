package api

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the OpenAPI 3.1 description of every route, request and answer of the
// server, and of the status webhooks the workers send (openapi.yaml beside this
// file). The server serves it at GET /openapi.yaml; TestOpenAPIContract validates
// real answers against it, so it cannot drift from the code.
//
//go:embed openapi.yaml
var OpenAPI []byte

// openapi is GET /openapi.yaml: unauthenticated, like any public API contract (it
// holds no secret, and client generators fetch it without credentials).
func openapi(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(OpenAPI)
}
