package pipeline

import (
	"fmt"

	"github.com/silt-dev/silt/internal/blob"
	"github.com/silt-dev/silt/internal/change"
	"github.com/silt-dev/silt/internal/config"
	"github.com/silt-dev/silt/internal/enrich"
	"github.com/silt-dev/silt/internal/silver"
)

// silverTables builds the per-table Silver options (partitioning and
// enrichment) from silver.tables; CSV lookups are read here, so a missing or
// malformed file stops silt at start with the file named.
func silverTables(cfg *config.Config, store blob.Store) (map[change.TableID]silver.TableOptions, error) {
	out := map[change.TableID]silver.TableOptions{}
	for name, tc := range cfg.Silver.Tables {
		id, err := config.ParseTable(name)
		if err != nil {
			return nil, fmt.Errorf("silver.tables.%s: %w", name, err)
		}
		opts := silver.TableOptions{PartitionBy: tc.PartitionBy}
		if len(tc.Derived) > 0 || len(tc.Lookups) > 0 {
			spec := enrich.Spec{}
			for _, d := range tc.Derived {
				spec.Derived = append(spec.Derived, enrich.Derived{Name: d.Name, Function: d.Function, Args: d.Args})
			}
			for _, l := range tc.Lookups {
				el := enrich.Lookup{File: l.File, On: l.On, Columns: l.Columns}
				if l.Table != "" {
					if el.Table, err = l.LookupTablePath(); err != nil {
						return nil, fmt.Errorf("silver.tables.%s: %w", name, err)
					}
				}
				spec.Lookups = append(spec.Lookups, el)
			}
			if opts.Enrich, err = enrich.New(spec, store); err != nil {
				return nil, fmt.Errorf("silver.tables.%s: %w", name, err)
			}
		}
		out[id] = opts
	}
	return out, nil
}
