package kinesis

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/silt-dev/silt/internal/stream"
	"github.com/silt-dev/silt/internal/stream/streamtest"
)

// kinesaliteURL is the endpoint of the kinesalite that TestMain started,
// or "" with the reason in kinesaliteMissing.
var (
	kinesaliteURL     string
	kinesaliteMissing string
)

func TestMain(m *testing.M) {
	stop := startKinesalite()
	code := m.Run()
	stop()
	os.Exit(code)
}

// kinesaliteBin finds kinesalite: $SILT_KINESALITE, else the copy
// scripts/setup.sh installs under .tools/kinesalite in the repository.
func kinesaliteBin() (string, error) {
	if p := os.Getenv("SILT_KINESALITE"); p != "" {
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, ".tools", "kinesalite", "node_modules", ".bin", "kinesalite")
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("%s not found: run scripts/setup.sh (needs node and npm)", p)
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("repository root not found")
		}
		dir = parent
	}
}

// startKinesalite starts kinesalite (in memory) on a free port and waits
// until it answers. It returns how to stop it.
func startKinesalite() func() {
	bin, err := kinesaliteBin()
	if err != nil {
		kinesaliteMissing = err.Error()
		return func() {}
	}
	if _, err := exec.LookPath("node"); err != nil {
		kinesaliteMissing = "node is not installed: run scripts/setup.sh"
		return func() {}
	}
	var lastErr error
	for range 5 { // a port found free can be taken before kinesalite binds it
		port, err := freePort()
		if err != nil {
			lastErr = err
			continue
		}
		var out bytes.Buffer
		cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--createStreamMs", "0", "--deleteStreamMs", "0",
			"--updateStreamMs", "0", "--shardLimit", "10000")
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			kinesaliteMissing = fmt.Sprintf("start %s: %v", bin, err)
			return func() {}
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		if err := waitHTTP(url, exited, 20*time.Second); err != nil {
			cmd.Process.Kill()
			<-exited
			lastErr = fmt.Errorf("%v; output: %s", err, out.String())
			continue
		}
		kinesaliteURL = url
		return func() {
			cmd.Process.Kill()
			<-exited
		}
	}
	kinesaliteMissing = fmt.Sprintf("kinesalite did not start: %v", lastErr)
	return func() {}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitHTTP polls url until it answers, the process exits or the time is up.
func waitHTTP(url string, exited <-chan struct{}, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("kinesalite exited")
		case <-tick.C:
		}
	}
	return fmt.Errorf("kinesalite did not answer within %v", limit)
}

// kinesaliteClient returns a client for the test's kinesalite, skipping
// the test when kinesalite is not installed, unless CI is set: CI must not
// pass by skipping.
func kinesaliteClient(t *testing.T) *kinesis.Client {
	t.Helper()
	if kinesaliteURL == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("kinesalite is required in CI: %s", kinesaliteMissing)
		}
		t.Skipf("kinesalite not available: %s", kinesaliteMissing)
	}
	return kinesis.New(kinesis.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(kinesaliteURL),
		Credentials:  credentials.NewStaticCredentialsProvider("silt", "silt", ""),
	})
}

func TestConformanceKinesalite(t *testing.T) {
	t.Parallel()
	api := kinesaliteClient(t)
	streamtest.RunWith(t, opener(api), streamtest.Options{MaxRecordBytes: maxRecordBytes - 64,
		Reshard: func(t *testing.T, sl stream.Log, step int) { kinesaliteReshard(t, api, sl.(*Log).opts.Stream, step) }})
}

// kinesaliteReshard is streamtest's Reshard hook: split the first open
// shard, split the last open one, merge the last two (that split's
// children, adjacent).
func kinesaliteReshard(t *testing.T, api *kinesis.Client, name string, step int) {
	ctx := ctxT(t)
	out, err := api.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	var open []types.Shard
	for _, s := range out.Shards {
		if s.SequenceNumberRange == nil || s.SequenceNumberRange.EndingSequenceNumber == nil {
			open = append(open, s)
		}
	}
	switch step {
	case 0, 1:
		s := open[0]
		if step == 1 {
			s = open[len(open)-1]
		}
		_, err = api.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String(name), ShardToSplit: s.ShardId, NewStartingHashKey: aws.String(splitPoint(t, s))})
	case 2:
		_, err = api.MergeShards(ctx, &kinesis.MergeShardsInput{StreamName: aws.String(name),
			ShardToMerge: open[len(open)-2].ShardId, AdjacentShardToMerge: open[len(open)-1].ShardId})
	}
	if err != nil {
		t.Fatalf("reshard step %d: %v", step, err)
	}
	waitActive(t, api, name)
}

// TestKinesaliteReshard checks that ListShards, split and merge as a real
// server does them are followed (kinesalite implements SplitShard and
// MergeShards like Kinesis: parents closed, children listed).
func TestKinesaliteReshard(t *testing.T) {
	t.Parallel()
	api := kinesaliteClient(t)
	name, dir := streamName(t), t.TempDir()
	ctx := ctxT(t)
	l, err := Open(ctx, Options{Client: api, Stream: name, Shards: 2, StateDir: dir, Create: true, Logger: quiet(), Seed: seed(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	want := map[string]int{}
	appendSome := func(n int) {
		var es []stream.Entry
		for i := range n {
			k := fmt.Sprintf("key-%d", i%10)
			es = append(es, stream.Entry{PartitionKey: []byte(k), Data: []byte(fmt.Sprint(want[k]))})
			want[k]++
		}
		if err := l.Append(ctx, es); err != nil {
			t.Fatal(err)
		}
	}
	appendSome(50)
	shards, err := api.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	first := shards.Shards[0]
	mid := splitPoint(t, first)
	if _, err := api.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String(name), ShardToSplit: first.ShardId, NewStartingHashKey: aws.String(mid)}); err != nil {
		t.Fatal(err)
	}
	waitActive(t, api, name)
	appendSome(50)
	checkOrder(t, readAll(t, l), want)
}

// splitPoint is the middle of a shard's hash key range.
func splitPoint(t *testing.T, s types.Shard) string {
	r, err := parseRange(s.HashKeyRange.StartingHashKey, s.HashKeyRange.EndingHashKey)
	if err != nil {
		t.Fatal(err)
	}
	mid := r.lo.Add(r.lo, r.hi)
	return mid.Rsh(mid, 1).String()
}

// waitActive polls until the stream is ACTIVE again after a reshard.
func waitActive(t *testing.T, api *kinesis.Client, name string) {
	t.Helper()
	ctx := ctxT(t)
	for {
		out, err := api.DescribeStreamSummary(ctx, &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		if out.StreamDescriptionSummary.StreamStatus == types.StreamStatusActive {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("stream did not become active")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

var _ = context.Background
