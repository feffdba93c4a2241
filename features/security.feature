Feature: API keys
  Every request to the REST and NATS APIs carries an API key (`Authorization:
  Bearer <key>`), as does every one-hop request of `torua.Client` to a node.
  `torua up` makes an admin key on its first start (`torua-data/secrets/admin.key`),
  which these scenarios use to make more. A key has a role (read < write <
  admin) and may be a tenant's, limited to named graphs and key prefixes.
  Without a valid key the answer is 401; outside the key's rights, 403; and
  nothing changes either way. A revoked key is refused by every gateway and node
  within a second.

  Scenario: A key reaches what its role and its tenant allow, until it is revoked
    Given an API key "reader" with role "read"
    And a tenant API key "ingest" with role "write" for the key prefix "tenants/acme/"
    When "ingest" stores "tenants/acme/doc-1"
    Then the answer is 204
    When "ingest" stores "tenants/other/doc-1"
    Then the answer is 403 with error code "forbidden"
    When "ingest" asks for "/nodes"
    Then the answer is 403 with error code "forbidden"
    When "reader" reads "tenants/acme/doc-1"
    Then the answer is 200
    When "reader" stores "tenants/acme/doc-1"
    Then the answer is 403 with error code "forbidden"
    When a request without an API key reads "tenants/acme/doc-1"
    Then the answer is 401 with error code "unauthorized"
    When the admin revokes the key "ingest"
    Then within a second "ingest" reading "tenants/acme/doc-1" is answered 401
    And "tenants/other/doc-1" does not exist
