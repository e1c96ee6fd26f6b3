package silver_test

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/delta"
	"github.com/silt-dev/silt/internal/delta/datafile"
	"github.com/silt-dev/silt/internal/enrich"
	"github.com/silt-dev/silt/internal/silver"
	"github.com/silt-dev/silt/internal/testutil/lakeh"
)

func TestSilverEnrichmentAndPartitioning(t *testing.T) {
	h := lakeh.New(t)
	csvPath := filepath.Join(t.TempDir(), "plants.csv")
	os.WriteFile(csvPath, []byte("v,region\nnorth,EU\nsouth,US\n"), 0o644)
	en, err := enrich.New(enrich.Spec{
		Derived: []enrich.Derived{{Name: "label", Function: "concat", Args: []string{"v", "'#'", "id"}}, {Name: "v_upper", Function: "upper", Args: []string{"v"}}},
		Lookups: []enrich.Lookup{{File: csvPath, On: "v", Columns: []string{"region"}}},
	}, h.Store)
	if err != nil {
		t.Fatal(err)
	}
	opts := silver.Options{Table: func(change.TableID) silver.TableOptions {
		return silver.TableOptions{PartitionBy: []string{"v"}, Enrich: en}
	}}
	h.TxnAt(100, ins("1", "north"), ins("2", "south"), ins("3", "west"))
	h.TxnAt(110, upd("2", "north"), deleteKey("3"))
	h.Bronze()
	h.SilverWith(rel.Table, opts)

	tb := delta.NewTable(h.Store, silver.TablePath(rel.Table))
	snap, err := tb.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if pc := snap.PartitionColumns(); len(pc) != 1 || pc[0] != "v" {
		t.Fatalf("partition columns %v, want [v]", pc)
	}
	ti := datafile.Info(tb, snap)
	var got []string
	err = datafile.Scan(context.Background(), h.Store, ti, snap.Files(), func(r arrow.RecordBatch) error {
		ix := map[string]int{}
		for i, f := range r.Schema().Fields() {
			ix[f.Name] = i
		}
		for i := 0; i < int(r.NumRows()); i++ {
			var p []string
			for _, c := range []string{"id", "v", "label", "v_upper", "region"} {
				p = append(p, r.Column(ix[c]).ValueStr(i))
			}
			got = append(got, strings.Join(p, ","))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	want := []string{"1,north,north#1,NORTH,EU", "2,north,north#2,NORTH,EU"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %v, want %v", got, want)
	}
	for _, f := range snap.Files() {
		if v := f.PartitionValues["v"]; v == nil || *v != "north" {
			t.Fatalf("file %s partition %v", f.Path, f.PartitionValues)
		}
	}
}
