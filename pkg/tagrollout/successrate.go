package tagrollout

import (
	"fmt"
	"regexp"
	"strings"
	"text/template"
	"time"

	"github.com/prometheus/common/model"
)

// MaxRateWindow bounds the window of a batch's success-rate query.
const MaxRateWindow = 5 * time.Minute

// RateWindow is the window a batch's success-rate query looks back over:
// the time since its tag moved (so the old revision's traffic does not
// count), in whole seconds, at least 1s and at most MaxRateWindow.
func RateWindow(sinceMoved time.Duration) time.Duration {
	w := sinceMoved.Truncate(time.Second)
	if w < time.Second {
		w = time.Second
	}
	if w > MaxRateWindow {
		w = MaxRateWindow
	}
	return w
}

// ClustersRegex is a PromQL regular expression (as it goes between double
// quotes) matching exactly the given cluster IDs.
func ClustersRegex(clusters []string) string {
	q := make([]string, len(clusters))
	for i, c := range clusters {
		q[i] = regexp.QuoteMeta(c)
	}
	return strings.ReplaceAll(strings.ReplaceAll(strings.Join(q, "|"), `\`, `\\`), `"`, `\"`)
}

// DefaultRateSelector picks the requests the default success-rate query
// counts: istio_requests_total as reported by the clients (reporter
// "source") in the batch's clusters, whose proxies the new revision
// injected and configures.
func DefaultRateSelector(clusters []string) string {
	return fmt.Sprintf(`reporter="source",source_cluster=~"%s"`, ClustersRegex(clusters))
}

// ExpandRateQuery fills a custom success-rate query: {{ clusters }} becomes
// ClustersRegex(clusters) and {{ window }} the window as a PromQL
// duration.
func ExpandRateQuery(query string, clusters []string, window time.Duration) (string, error) {
	t, err := parseRateQuery(query, clusters, window)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, nil); err != nil {
		return "", fmt.Errorf("the success-rate query %q: %w", query, err)
	}
	return b.String(), nil
}

// CheckRateQuery reports a custom success-rate query that cannot be
// expanded (a template error, an unknown placeholder).
func CheckRateQuery(query string) error {
	_, err := ExpandRateQuery(query, []string{"c"}, time.Minute)
	return err
}

func parseRateQuery(query string, clusters []string, window time.Duration) (*template.Template, error) {
	t, err := template.New("query").Option("missingkey=error").Funcs(template.FuncMap{
		"clusters": func() string { return ClustersRegex(clusters) },
		"window":   func() string { return model.Duration(window).String() },
	}).Parse(query)
	if err != nil {
		return nil, fmt.Errorf("the success-rate query %q: %w (placeholders are {{ clusters }} and {{ window }})", query, err)
	}
	return t, nil
}
