package tunnel

import (
	"encoding/json"
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// writeStatus answers a request the server refuses with a Kubernetes Status
// object, so that kubectl and client-go show message to the user.
func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(statusBody(code, reason, message))
}

// statusBody is the JSON of a failed Status, newline-terminated.
func statusBody(code int, reason metav1.StatusReason, message string) []byte {
	st := metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure,
		Message:  message,
		Reason:   reason,
		Code:     int32(code),
	}
	b, _ := json.Marshal(st)
	return append(b, '\n')
}
