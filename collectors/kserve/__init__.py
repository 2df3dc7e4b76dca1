"""KServe payload-logger bridge: KServe InferenceService `logger` CloudEvents (request and
response, paired by `ce-id`) in, contract v1 `predictions` and `images` records out.

Modules: `cloudevents` (HTTP binding), `payloads` (V1 / V2 bodies), `pairing` (the TTL
store), `bridge` (pairing + conversion + metrics), `http_app` (WSGI endpoints) and
`command` (`visionmon bridge`). See docs/serving.md.
"""
