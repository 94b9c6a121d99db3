-- Argo CD health of the operator's kinds with status (ClusterStack, ClusterStackRelease, ClusterAddon,
-- OpenStackClusterStackRelease, OpenStackNodeImageRelease, OpenStackClusterCredential;
-- resource.customizations.health in
-- argocd-cm, which needs it once per kind), read from their
-- kstatus conditions as the operator sets them: an observedGeneration behind the object's
-- generation is news not yet acted on (Progressing); Stalled True needs a user (Degraded, with
-- what to fix); Ready True is Healthy; anything else is still being worked on (Progressing).
local hs = { status = "Progressing", message = "Waiting for the operator to report status" }
if obj.status == nil then
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end
local byType = {}
for _, c in ipairs(obj.status.conditions or {}) do
  byType[c.type] = c
end
local stalled, ready, reconciling = byType["Stalled"], byType["Ready"], byType["Reconciling"]
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message or stalled.reason or ""
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
  return hs
end
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = reconciling.message or reconciling.reason or ""
elseif ready ~= nil then
  hs.message = ready.message or ready.reason or ""
end
return hs
