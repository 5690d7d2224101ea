"""The API's messages and stubs, generated from proto/jobstream/v1 when the package is built."""
