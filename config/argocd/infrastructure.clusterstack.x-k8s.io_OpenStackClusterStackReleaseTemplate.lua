-- Argo CD health of an OpenStackClusterStackReleaseTemplate: a template has no status (the
-- operator only copies it into OpenStackClusterStackReleases), so existing is being healthy.
return { status = "Healthy", message = "" }
