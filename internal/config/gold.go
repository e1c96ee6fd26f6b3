package config

import (
	"fmt"
	"strings"
	"time"
)

// GoldConfig defines one Gold table of windowed aggregates over a Silver
// table (see internal/gold).
type GoldConfig struct {
	// Name of the Gold table; it lives at <lake>/gold/<name>.
	Name string `yaml:"name"`
	// Source is the Silver table, "schema.table".
	Source string `yaml:"source"`
	// TimeColumn is the event-time column (timestamp or date).
	TimeColumn string `yaml:"time_column"`
	// Window is the tumbling window size. Default 1m.
	Window Duration `yaml:"window"`
	// GroupBy columns, e.g. [tag_id].
	GroupBy []string `yaml:"group_by"`
	// Value is the numeric column aggregated (count, min, max, sum, avg).
	Value string `yaml:"value"`
	// Lateness: a window is final once it ended this long before the highest
	// event time seen; later changes to it are counted as late and not applied.
	// Default 10m.
	Lateness Duration `yaml:"lateness"`
}

func (g *GoldConfig) setDefaults() {
	if g.Window.Duration == 0 {
		g.Window.Duration = time.Minute
	}
	if g.Lateness.Duration == 0 {
		g.Lateness.Duration = 10 * time.Minute
	}
}

func (g *GoldConfig) validate(i int, add func(string, ...any)) {
	where := fmt.Sprintf("gold[%d]", i)
	if g.Name != "" {
		where = fmt.Sprintf("gold[%d] (%s)", i, g.Name)
	}
	if !validIdent(g.Name) {
		add("%s.name %q must be lower-case letters, digits and underscores", where, g.Name)
	}
	if _, err := ParseTable(g.Source); err != nil {
		add("%s.source: %v", where, err)
	}
	if strings.TrimSpace(g.TimeColumn) == "" {
		add("%s.time_column is empty: name the event-time column", where)
	}
	if strings.TrimSpace(g.Value) == "" {
		add("%s.value is empty: name the numeric column to aggregate", where)
	}
	if g.Window.Duration < time.Second {
		add("%s.window %s is too short: use at least 1s", where, g.Window)
	}
	if g.Lateness.Duration < 0 {
		add("%s.lateness must not be negative", where)
	}
}
