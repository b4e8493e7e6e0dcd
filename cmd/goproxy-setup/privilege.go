package main

// dropPrivileges drops the agent process to user (see agent/privilege).
func dropPrivileges(user string) error {
	return usageErrorf("--run-as %s: privilege separation is not available in this build", user)
}
