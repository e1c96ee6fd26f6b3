package pipeline_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/silt-dev/silt/internal/blob/faulty"
	"github.com/silt-dev/silt/internal/blob/s3"
	"github.com/silt-dev/silt/internal/blob/s3/s3test"
	"github.com/silt-dev/silt/internal/config"
	"github.com/silt-dev/silt/internal/demo"
	"github.com/silt-dev/silt/internal/testutil/pgtest"
)

// s3Config puts Bronze and Silver on S3 at endpoint, with credentials from
// the environment, as `silt run` would get them from the default AWS chain.
func s3Config(t *testing.T, db *pgtest.DB, dataDir string, srv *s3test.Server, endpoint, prefix string) *config.Config {
	t.Setenv("AWS_ACCESS_KEY_ID", s3test.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true") // never look for an instance role
	cfg := testConfig(t, db, dataDir)
	cfg.Lake.Path = "s3://" + srv.Bucket + "/" + prefix
	cfg.Lake.Endpoint = endpoint
	cfg.Lake.PathStyle = true
	cfg.Lake.PartSize = s3.MinPartSize
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestEndToEndOnS3: Bronze and Silver on versitygw, a restart in the
// middle (state is recovered from S3 alone), Silver equals the source.
func TestEndToEndOnS3(t *testing.T) {
	srv := s3test.VersityGW(t)
	db := pgtest.NewDB(t)
	db.Exec(t, demo.DDL)
	dataDir := t.TempDir()
	prefix := fmt.Sprintf("lake-%s", db.Suffix)
	cfg := s3Config(t, db, dataDir, srv, srv.Endpoint, prefix)
	seed := uint64(time.Now().UnixNano())
	t.Logf("workload seed %d", seed)

	r := start(t, cfg)
	if _, ok := r.p.Store().(*s3.Store); !ok {
		t.Fatalf("lake store is %T, want *s3.Store", r.p.Store())
	}
	if err := demo.Workload(context.Background(), db.DSN, demo.WorkloadOptions{MinChanges: 4000, Workers: 2, Seed: seed}); err != nil {
		t.Fatal(err)
	}
	waitEqual(t, r, db, 2*time.Minute)
	r.shutdown(t)

	if err := demo.Workload(context.Background(), db.DSN, demo.WorkloadOptions{MinChanges: 2000, Workers: 2, Seed: seed + 1, IDBase: 100_000}); err != nil {
		t.Fatal(err)
	}
	r2 := start(t, s3Config(t, db, dataDir, srv, srv.Endpoint, prefix))
	res := waitEqual(t, r2, db, 2*time.Minute)
	for _, v := range res {
		t.Log(v)
		if v.SourceRows == 0 {
			t.Fatalf("%s: no rows", v.Table)
		}
	}
	r2.shutdown(t)
	checkBronzeNoDuplicates(t, r2.p.Store())
	checkSlotNotPastBronze(t, db, cfg)
	// Nothing of the lake went to local disk.
	if _, err := os.Stat(filepath.Join(dataDir, "lake")); !os.IsNotExist(err) {
		t.Fatalf("a local lake directory exists: %v", err)
	}
	infos, err := r2.p.Store().List(context.Background(), "silver/")
	if err != nil || len(infos) == 0 {
		t.Fatalf("no silver objects on S3: %v", err)
	}
}

// TestEndToEndOnS3WithFaults: the same through a proxy that throttles,
// fails with 5xx, and lets conditional writes (Delta commits) take effect
// while their replies fail. Silver still equals the source, Bronze has no
// duplicates.
func TestEndToEndOnS3WithFaults(t *testing.T) {
	srv := s3test.VersityGW(t)
	tr := &faulty.Transport{}
	endpoint := s3test.FaultProxy(t, srv.Endpoint, tr)
	db := pgtest.NewDB(t)
	db.Exec(t, demo.DDL)
	cfg := s3Config(t, db, t.TempDir(), srv, endpoint, "faulty-"+db.Suffix)
	cfg.Lake.MaxAttempts = 10
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d", seed)
	// Faults start after the tables exist, at seeded points.
	tr.Add(faulty.Rule{Method: "PUT", Path: "_delta_log/", Header: "If-None-Match", Kind: faulty.StatusAfter, Status: 502, Code: "BadGateway", Skip: 10 + rng.IntN(10), Times: 4})
	tr.Add(faulty.Rule{Method: "PUT", Path: "_delta_log/", Header: "If-None-Match", Kind: faulty.Status, Status: 503, Code: "SlowDown", Skip: 5 + rng.IntN(10), Times: 6})
	tr.Add(faulty.Rule{Method: "PUT", Path: ".parquet", Kind: faulty.StatusAfter, Status: 500, Code: "InternalError", Skip: rng.IntN(10), Times: 3})
	tr.Add(faulty.Rule{Method: "GET", Kind: faulty.Status, Status: 500, Code: "InternalError", Skip: 20 + rng.IntN(20), Times: 6})
	tr.Add(faulty.Rule{Method: "GET", Query: "list-type", Kind: faulty.Status, Status: 503, Code: "SlowDown", Skip: 10 + rng.IntN(10), Times: 4})

	r := start(t, cfg)
	if err := demo.Workload(context.Background(), db.DSN, demo.WorkloadOptions{MinChanges: 3000, Workers: 2, Seed: seed}); err != nil {
		t.Fatal(err)
	}
	waitEqual(t, r, db, 2*time.Minute)
	r.shutdown(t)
	if tr.Fired() < 10 {
		t.Fatalf("only %d faults fired", tr.Fired())
	}
	tr.Clear()
	checkBronzeNoDuplicates(t, r.p.Store())
	checkSlotNotPastBronze(t, db, cfg)
	t.Logf("%d faults injected in %d requests", tr.Fired(), tr.Requests())
}
