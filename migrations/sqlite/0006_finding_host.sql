-- A finding's source as a host name, when the router's log named a host
-- instead of an address (sshd with UseDNS, PAM's rhost=).
ALTER TABLE findings ADD COLUMN host TEXT;
