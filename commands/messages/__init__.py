"""Commands as data: one small frozen value per thing a caller can ask, handled by one
function. A view builds a command from its request; the command line, the console and
the process managers can build the same value. Being a value, a command can be queued to
the writer, decided in a batch with others, fingerprinted for idempotency, logged and
issued again.

One module per area, in the order of the API's sections; every command is importable
from here."""
from commands.messages.base import Command, FrozenMap
from commands.messages.catalog import (AddProduct, AdjustStock, ChangePrice, DelistProduct,
                                       ListProduct, OpenWarehouse, ReceiveStock,
                                       TransferStock)
from commands.messages.distributors import (ApplyDistributor, ApproveDistributor,
                                            ApproveWithdrawal, ChangeUpline,
                                            RejectDistributor, RejectWithdrawal,
                                            ReinstateDistributor, RequestWithdrawal,
                                            SetCommissionRule, SuspendDistributor)
from commands.messages.orders import CancelOrder, PayOrder, PlaceOrder
from commands.messages.fulfilment import (AddCarrier, DispatchShipment, PackShipment,
                                          PickShipment, RecordCarrierEvent)
from commands.messages.promotions import AddThresholdPromotion, IssueCoupon
from commands.messages.purchasing import (ApprovePurchaseOrder, ReceivePurchaseOrder,
                                          RequestPurchaseOrder)
from commands.messages.aftersales import (ApproveCase, CloseCase, ReceiveCase, RefundCase,
                                          RejectCase, RequestCase, ShipCase)
from commands.messages.reports import SetReplenishmentPolicy
from commands.messages.webhooks import (DisableWebhook, EnableWebhook, PingWebhook,
                                        RegisterWebhook, ReplayWebhook, RotateWebhookSecret)

__all__ = [
    "Command", "FrozenMap",
    # catalog and stock
    "OpenWarehouse", "AddProduct", "ChangePrice", "DelistProduct", "ListProduct",
    "ReceiveStock", "AdjustStock", "TransferStock",
    # distributors and the ledger
    "ApplyDistributor", "ApproveDistributor", "RejectDistributor", "SuspendDistributor",
    "ReinstateDistributor", "ChangeUpline", "SetCommissionRule", "RequestWithdrawal",
    "ApproveWithdrawal", "RejectWithdrawal",
    # orders
    "PlaceOrder", "PayOrder", "CancelOrder",
    # fulfilment
    "AddCarrier", "PickShipment", "PackShipment", "DispatchShipment", "RecordCarrierEvent",
    # promotions
    "IssueCoupon", "AddThresholdPromotion",
    # purchasing
    "RequestPurchaseOrder", "ApprovePurchaseOrder", "ReceivePurchaseOrder",
    # after-sales
    "RequestCase", "ApproveCase", "RejectCase", "ReceiveCase", "RefundCase", "ShipCase",
    "CloseCase",
    # reports: the replenishment policy
    "SetReplenishmentPolicy",
    # webhooks
    "RegisterWebhook", "DisableWebhook", "EnableWebhook", "RotateWebhookSecret",
    "PingWebhook", "ReplayWebhook",
]
