package status

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "silt_test_gauge", Help: "x"}, func() float64 { return 42 }))
	healthy := error(nil)
	s, err := Start("127.0.0.1:0", reg, func() any { return map[string]any{"changes": 7} }, func() error { return healthy })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "http://" + s.Addr()
	code, body := get(t, base+"/status")
	var m map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &m) != nil || m["changes"] != float64(7) {
		t.Fatalf("/status: %d %s", code, body)
	}
	if code, body := get(t, base+"/metrics"); code != 200 || !strings.Contains(body, "silt_test_gauge 42") {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	healthy = errors.New("capture stopped")
	if code, body := get(t, base+"/healthz"); code != 503 || !strings.Contains(body, "capture stopped") {
		t.Fatalf("/healthz unhealthy: %d %s", code, body)
	}
	if _, err := Start(s.Addr(), reg, nil, nil); err == nil || !strings.Contains(err.Error(), "status.listen") {
		t.Fatalf("port in use: %v", err)
	}
}
