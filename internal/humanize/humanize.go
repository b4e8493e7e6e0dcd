// Package humanize owns how sizes read in reports, summaries and logs: one
// byte-size formatter, with binary units.
package humanize

import "fmt"

// Bytes formats n with a binary unit: "512 B", "12.3 KiB", "1.5 GiB".
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
