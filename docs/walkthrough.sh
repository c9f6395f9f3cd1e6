#!/usr/bin/env bash
# The README's walkthrough of the API, run end to end: every line of the README's blocks
# marked `<!-- walkthrough: docs/walkthrough.sh -->` is a line of this script, in the same
# order (tests/test_walkthrough.py holds them together and runs this against a real
# server). Each value an example needs comes from an earlier reply.
#
#   make run                                  # in another terminal; it prints the token
#   export TOKEN=…                            # an admin token
#   bash docs/walkthrough.sh                  # BASE defaults to http://127.0.0.1:8000/api/v1
#
# It prints each request and its reply, and stops with a message at the first answer it
# did not expect. It may be run again on the same database: what it creates is new each
# run, or created once under an Idempotency-Key. The distributor, integration and
# warehouse tokens come from `.venv/bin/fenxiao token create` on the server's database
# (FENXIAO_DATABASE_URL, default var/fenxiao.db), run from the repository's root.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${TOKEN:?export TOKEN=… (an admin token: make run prints one)}"

exec 3>&1  # the log: every request and reply goes here, whether or not it is captured
log() { printf '%s\n' "$*" >&3; }
fail() { printf '\nwalkthrough FAILED: %s\n' "$*" >&2; exit 1; }
EXPECT=  # a status other than 2xx that the next request is expected to answer

# curl, as the README's examples call it: shows the request and the reply, stops on a
# status it does not expect, and answers the body (printed here too when not captured).
curl() {
  local out status
  log "" "\$ curl $*"
  out=$(command curl -sS -w '\n%{http_code}' "$@") || fail "no answer to: curl $*"
  status=${out##*$'\n'}
  out=${out%$'\n'*}
  log "$out" "-> $status"
  case $status in
    2??|"$EXPECT") ;;
    *) fail "HTTP $status (expected ${EXPECT:-2xx}) from: curl $*" ;;
  esac
  [ /dev/stdout -ef /dev/fd/3 ] || printf '%s\n' "$out"  # captured: answer the body
}

check() {  # check ACTUAL EXPECTED WHAT
  [ "$1" = "$2" ] || fail "$3: expected $2, got $1"
  log "ok: $3 ($1)"
}

# poll URL as TOKEN until the Python expression EXPR holds of its JSON reply `r`: what the
# worker's process managers do follows a command by a moment
wait_until() {
  local url=$1 token=$2 expr=$3 reply=
  for _ in $(seq 100); do
    reply=$(command curl -sS "$url" -H "Authorization: Bearer $token")
    if python3 -c "import json, sys; r = json.loads(sys.argv[1]); sys.exit(not ($expr))" \
        "$reply" 2>/dev/null; then
      log "ok: $expr at $url"
      return
    fi
    sleep 0.1
  done
  fail "$expr never held for $url; last reply: $reply"
}

# -- The API ------------------------------------------------------------------------------

BASE=${BASE:-http://127.0.0.1:8000/api/v1}
CUSTOMER=C-$(date +%s)            # a new customer each run,
PHONE=13$(date +%s | cut -c 2-)   # and a new distributor's phone number
# field KEY…: one value of the JSON reply on stdin, e.g. field shipments 0 shipment_id
field() { python3 -c 'import json, sys
value = json.load(sys.stdin)
for key in sys.argv[1:]:
    value = value[int(key)] if isinstance(value, list) else value[key]
print(value)' "$@"; }

# the demo catalog and its stock
curl -s $BASE/products -H "Authorization: Bearer $TOKEN"
curl -s $BASE/inventory/TEA-LJ-250 -H "Authorization: Bearer $TOKEN"

# receive stock; a retry with the same Idempotency-Key returns the same reply and acts once
# (a refusal, 409, is kept with its key too: the retry gets the same 409, never a new run)
RECEIPT=$(curl -s -X POST $BASE/stock/receipts \
  -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
  -H "Idempotency-Key: receipt-0001" \
  -d '{"sku": "CUP-GW-6", "warehouse_id": "WH-SOUTH", "quantity": 30, "reference": "PO-1001"}')
POSITION=$(echo "$RECEIPT" | field position)

# read your own write: wait until the inventory projection has the position just returned
curl -s "$BASE/inventory/CUP-GW-6?min_position=$POSITION" -H "Authorization: Bearer $TOKEN"

# a refused command (409 insufficient_stock) says why and changes nothing
EXPECT=409
curl -s -X POST $BASE/stock/adjustments \
  -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
  -d '{"sku": "SET-TRAVEL", "warehouse_id": "WH-SOUTH", "delta": -999, "reason": "count"}'
EXPECT=

curl -s $BASE/health

# -- Distributors and commissions ---------------------------------------------------------

# a distributor applies with its referrer's code, an operator approves: the reply carries
# the new distributor's own referral code and its upline
UPLINE_CODE=$(curl -s $BASE/distributors/DEMO-D1 -H "Authorization: Bearer $TOKEN" \
  | field referral_code)
D=$(curl -s -X POST $BASE/distributors/applications \
  -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
  -d '{"name": "Wang Fang", "phone": "'$PHONE'", "referral_code": "'$UPLINE_CODE'"}' \
  | field distributor_id)
APPROVED=$(curl -s -X POST $BASE/distributors/$D/approve -H "Authorization: Bearer $TOKEN")
CODE=$(echo "$APPROVED" | field referral_code)
check "$(echo "$APPROVED" | field upline_id)" DEMO-D1 "the new distributor's upline"

# commission rules: the default until set is 1000 bp (level 1) and 500 bp (level 2)
RULE=$(curl -s -X POST $BASE/commission-rules \
  -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
  -d '{"sku": "TEA-LJ-250", "level1_rate_bp": 1200, "level2_rate_bp": 300}')
# queries are eventually consistent: ask for the position the command returned
curl -s "$BASE/commission-rules?min_position=$(echo "$RULE" | field position)" \
  -H "Authorization: Bearer $TOKEN"

# -- Orders -------------------------------------------------------------------------------

# a coupon (admin or operator; see Promotions): the Idempotency-Key makes a second run
# get the first reply instead of 409 duplicate
curl -s -X POST $BASE/coupons \
  -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
  -H "Idempotency-Key: coupon-tea-10" \
  -d '{"code": "tea-10", "amount_off": {"amount": 1000, "currency": "CNY"},
       "min_spend": {"amount": 5000, "currency": "CNY"}, "skus": ["TEA-LJ-250"],
       "total_limit": 500, "per_customer_limit": 1}'

# place an order (integration or admin): prices come from the catalog, never the request
ORDER_REPLY=$(curl -s -X POST $BASE/orders \
  -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
  -H "Idempotency-Key: order-$CUSTOMER-1" \
  -d '{"customer": {"customer_id": "'$CUSTOMER'", "name": "Li Lei", "phone": "13800138000"},
       "shipping_address": {"region": "east", "city": "Shanghai", "line1": "1 Nanjing Rd"},
       "lines": [{"sku": "TEA-LJ-250", "quantity": 2}],
       "referral_code": "'$CODE'", "coupon_code": "TEA-10"}')
ORDER=$(echo "$ORDER_REPLY" | field order_id)
TOTAL=$(echo "$ORDER_REPLY" | field total)
check "$(echo "$ORDER_REPLY" | field distributor_id)" "$D" "the order's distributor"
check "$(echo "$ORDER_REPLY" | field discount)" 1000 "the coupon's discount"

# pay the exact total (integration or admin): 25,600 less the coupon's 1,000
PAID=$(curl -s -X POST $BASE/orders/$ORDER/payments \
  -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
  -d '{"amount": {"amount": '$TOTAL', "currency": "CNY"}, "payment_reference": "WX-'$ORDER'"}')
check "$(echo "$PAID" | field paid)" "$TOTAL" "the amount paid"
check "$(echo "$PAID" | field status)" fulfilling "the paid order's status"

# the commission accrues as the worker's process manager meets the payment, a moment
# later; earnings as the distributor sees them (its token reads only its own data)
DTOKEN=$(.venv/bin/fenxiao token create --role distributor --distributor $D)
wait_until "$BASE/distributors/$D/earnings" "$DTOKEN" 'r["pending"] > 0'
curl -s $BASE/distributors/$D/earnings -H "Authorization: Bearer $DTOKEN"

# cancel before dispatch (integration, admin, operator): here another order, unpaid
OTHER=$(curl -s -X POST $BASE/orders \
  -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
  -d '{"customer": {"customer_id": "'$CUSTOMER'", "name": "Li Lei", "phone": "13800138000"},
       "shipping_address": {"region": "east", "city": "Shanghai", "line1": "1 Nanjing Rd"},
       "lines": [{"sku": "CUP-GW-6", "quantity": 1}]}' | field order_id)
CANCELLED=$(curl -s -X POST $BASE/orders/$OTHER/cancel \
  -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
  -d '{"reason": "customer changed their mind"}')
check "$(echo "$CANCELLED" | field status)" cancelled "the other order's status"
curl -s "$BASE/orders?status=cancelled&customer_id=$CUSTOMER&min_position=$(echo "$CANCELLED" | field position)" \
  -H "Authorization: Bearer $TOKEN"

# -- Fulfilment ---------------------------------------------------------------------------

# rate cards (admin): fees in fen, days per region, default days elsewhere. A carrier is
# created once: posting an existing carrier again is 409 duplicate (a new card for it is
# FulfilmentService.change_rate_card; the API has no endpoint for that yet)
curl -s -X POST $BASE/carriers \
  -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
  -H "Idempotency-Key: carrier-zto" \
  -d '{"carrier": "ZTO", "name": "ZTO Express", "base_fee": {"amount": 600, "currency": "CNY"},
       "per_item_fee": {"amount": 50, "currency": "CNY"}, "promised_days": {"east": 2},
       "default_days": 4}'

# the warehouse (warehouse or admin token): pick, pack, dispatch the paid order's shipment
SHIPMENT=$(echo "$PAID" | field shipments 0 shipment_id)
curl -s -X POST $BASE/shipments/$SHIPMENT/pick -H "Authorization: Bearer $TOKEN"
curl -s -X POST $BASE/shipments/$SHIPMENT/pack -H "Authorization: Bearer $TOKEN"
DISPATCHED=$(curl -s -X POST $BASE/shipments/$SHIPMENT/dispatch \
  -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" -d '{}')
CARRIER=$(echo "$DISPATCHED" | field carrier)
TRACKING=$(echo "$DISPATCHED" | field tracking_number)

# the carrier (integration token): idempotent by its event id
ITOKEN=$(.venv/bin/fenxiao token create --role integration)
DELIVERED=$(curl -s -X POST $BASE/carriers/$CARRIER/events \
  -H "Authorization: Bearer $ITOKEN" -H "Content-Type: application/json" \
  -d '{"event_id": "'$CARRIER-$SHIPMENT'-1", "tracking_number": "'$TRACKING'",
       "status": "delivered", "occurred_at": "'$(date -u +%FT%TZ)'"}')

# the shipments of an order with their whole history
curl -s "$BASE/orders/$ORDER/tracking?min_position=$(echo "$DELIVERED" | field position)" \
  -H "Authorization: Bearer $TOKEN"
check "$(curl -s "$BASE/orders/$ORDER?min_position=$(echo "$DELIVERED" | field position)" \
  -H "Authorization: Bearer $TOKEN" | field status)" delivered "the order's status"

# -- Promotions ---------------------------------------------------------------------------

# spend-threshold tiers (满减): the best tier an order reaches applies
curl -s -X POST $BASE/promotions/threshold \
  -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
  -H "Idempotency-Key: threshold-300-30" \
  -d '{"tiers": [{"min_spend": {"amount": 30000, "currency": "CNY"},
                  "discount": {"amount": 3000, "currency": "CNY"}}]}'

curl -s $BASE/coupons/TEA-10 -H "Authorization: Bearer $TOKEN"

# -- B2B purchase orders ------------------------------------------------------------------

# a distributor (its own distributor_id only) or an admin: at today's wholesale prices
PO_REPLY=$(curl -s -X POST $BASE/purchase-orders \
  -H "Authorization: Bearer $DTOKEN" -H "Content-Type: application/json" \
  -d '{"distributor_id": "'$D'", "lines": [{"sku": "TEA-LJ-250", "quantity": 10}]}')
PO=$(echo "$PO_REPLY" | field purchase_order_id)
# approval (admin, operator) reserves the stock and creates the shipments, in one save
PO_SHIPMENT=$(curl -s -X POST $BASE/purchase-orders/$PO/approve -H "Authorization: Bearer $TOKEN" \
  | field shipments 0 shipment_id)
# the warehouse picks, packs and dispatches them (see Fulfilment); then the distributor
curl -s -X POST $BASE/shipments/$PO_SHIPMENT/pick -H "Authorization: Bearer $TOKEN"
curl -s -X POST $BASE/shipments/$PO_SHIPMENT/pack -H "Authorization: Bearer $TOKEN"
curl -s -X POST $BASE/shipments/$PO_SHIPMENT/dispatch \
  -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" -d '{}'
RECEIVED=$(curl -s -X POST $BASE/purchase-orders/$PO/receive -H "Authorization: Bearer $DTOKEN")
check "$(echo "$RECEIVED" | field status)" received "the purchase order's status"

# -- After-sales ---------------------------------------------------------------------------

# integration, admin or operator: a case names the order, its lines and a reason
CASE=$(curl -s -X POST $BASE/after-sales \
  -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
  -d '{"order_id": "'$ORDER'", "type": "return_refund",
       "lines": [{"sku": "TEA-LJ-250", "quantity": 1}], "reason": "damaged in transit"}' \
  | field case_id)
curl -s -X POST $BASE/after-sales/$CASE/approve -H "Authorization: Bearer $TOKEN"
# warehouse or admin: the goods are back, restocked into a warehouse (or scrapped: false)
WTOKEN=$(.venv/bin/fenxiao token create --role warehouse)
curl -s -X POST $BASE/after-sales/$CASE/receive \
  -H "Authorization: Bearer $WTOKEN" -H "Content-Type: application/json" \
  -d '{"restock": true, "warehouse_id": "WH-EAST"}'
# admin or operator: refund what the unit was paid, the line's paid over its 2 units
# (below FENXIAO_FOUR_EYES_MIN, so one approval pays it)
REFUND=$(( $(echo "$PAID" | field lines 0 paid) / 2 ))
REFUNDED=$(curl -s -X POST $BASE/after-sales/$CASE/refund \
  -H "Authorization: Bearer $TOKEN" -H "Content-Type: application/json" \
  -d '{"amount": {"amount": '$REFUND', "currency": "CNY"}, "refund_reference": "RF-'$CASE'"}')
check "$(echo "$REFUNDED" | field status)" refunded "the case's status"
check "$(echo "$REFUNDED" | field refunded)" "$REFUND" "the amount refunded"
curl -s -X POST $BASE/after-sales/$CASE/close -H "Authorization: Bearer $TOKEN"

# the commission process manager reverses the refunded unit's share, a moment later
wait_until "$BASE/distributors/$D/earnings" "$DTOKEN" 'r["reversed"] > 0'
curl -s $BASE/distributors/$D/commissions -H "Authorization: Bearer $DTOKEN"

# -- Process managers, time and notifications ---------------------------------------------

curl -s -X POST $BASE/admin/tick -H "Authorization: Bearer $TOKEN"
# notifications (admin, operator, auditor; a distributor token sees its own only), oldest
# first; ?after= an ISO time with offset, for polling
curl -s "$BASE/notifications?customer_id=$CUSTOMER" -H "Authorization: Bearer $TOKEN"

log "" "walkthrough OK: order $ORDER paid $TOTAL and delivered, case $CASE refunded $REFUND," \
  "distributor $D earned and had its share reversed, purchase order $PO received"
