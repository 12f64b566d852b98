-- Deploys, namespaces and labels: what a revision referenced and where it came from,
-- which deploy source owns a flow, and tokens limited to namespaces.

-- The files a revision's flow references inside its folder (scripts, modules, a
-- package's files) as a JSON object {relative path: text, or null when missing or not
-- text}; and where it was deployed from (a folder, or git URL, ref and commit).
ALTER TABLE flow_revisions ADD COLUMN scripts TEXT;
ALTER TABLE flow_revisions ADD COLUMN origin TEXT;
CREATE INDEX flow_revisions_path ON flow_revisions (path, id);

-- The deploy source (a folder's absolute path, or git+URL) that last deployed the flow,
-- and when a deploy of that source deactivated it because its file was gone.
ALTER TABLE flows ADD COLUMN deploy_source TEXT;
ALTER TABLE flows ADD COLUMN removed_at REAL;
CREATE INDEX flows_deploy_source ON flows (deploy_source) WHERE deploy_source IS NOT NULL;

-- A token limited to namespaces: a JSON list of them; NULL for every namespace.
ALTER TABLE api_tokens ADD COLUMN namespaces TEXT;
