package delta

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// lastCheckpointChecksum computes the optional _last_checkpoint "checksum":
// MD5 over a canonical form of the JSON object. Every leaf becomes
// path=value, where the path joins quoted, percent-encoded object keys
// (and bare array indices) with "+", string values are quoted and
// percent-encoded, other values are their JSON text; pairs are sorted by
// path bytes and joined with ",". The top-level "checksum" is excluded.
func lastCheckpointChecksum(raw []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var root map[string]any
	if err := dec.Decode(&root); err != nil {
		return "", fmt.Errorf("delta: _last_checkpoint: %w", err)
	}
	delete(root, "checksum")
	var pairs [][2]string
	var walk func(path string, v any)
	walk = func(path string, v any) {
		join := func(p string) string {
			if path == "" {
				return p
			}
			return path + "+" + p
		}
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				walk(join(`"`+pctEncode(k)+`"`), e)
			}
		case []any:
			for i, e := range x {
				walk(join(fmt.Sprint(i)), e)
			}
		case string:
			pairs = append(pairs, [2]string{path, `"` + pctEncode(x) + `"`})
		case nil:
			pairs = append(pairs, [2]string{path, "null"})
		default:
			b, _ := json.Marshal(x)
			pairs = append(pairs, [2]string{path, string(b)})
		}
	}
	walk("", root)
	sort.Slice(pairs, func(i, j int) bool { return pairs[i][0] < pairs[j][0] })
	var sb strings.Builder
	for i, p := range pairs {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(p[0])
		sb.WriteByte('=')
		sb.WriteString(p[1])
	}
	sum := md5.Sum([]byte(sb.String()))
	return hex.EncodeToString(sum[:]), nil
}

func pctEncode(s string) string {
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, "%%%02X", c)
		}
	}
	return sb.String()
}
