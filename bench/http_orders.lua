-- wrk script of bench/http_run.sh: POST /orders of the orders example with a
-- JSON body (any customer id: creating an order only writes it and its event).
wrk.method = "POST"
wrk.body = '{"customer_id": "0190a5b2-7c3e-7a11-8f00-000000000001", "order_total": 10000}'
wrk.headers["Content-Type"] = "application/json"
