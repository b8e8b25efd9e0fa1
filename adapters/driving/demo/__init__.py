"""The demo: a day of a shop's returns, played through the real topics and the HTTP API.

Outside machines are simulated as they integrate: the commerce platform publishes orders,
the warehouse receipts and inspections, the stores their counter returns, and the payment
sandbox settles refunds, all on Kafka. People act through the API, served in process on a
free local port, each tool with its own key: customers request RMAs on the portal (order
number and e-mail), customer service requests some for callers, reviews the expensive
ones, offers keep-the-item, matches blind parcels and pays failed refunds as store credit.
The relay, the integrations worker and the projections worker run for real.

The orders are the past five weeks' history, dated with each message's CloudEvents
``time``; the returns happen today, on the real clock, because the API stamps every command
with its own clock as it would for the real portal. So order age decides the policy: orders
delivered more than 30 days ago are refused as outside the window.
"""
