package agent

import "golang.org/x/mod/module"

func matchPatterns(patterns, modulePath string) bool {
	return module.MatchPrefixPatterns(patterns, modulePath)
}
