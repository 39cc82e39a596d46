"""The business actions: appointments, customers, messages, hand-over, the owner's summaries.

What a receptionist gets done, offered to the conversation engine as tools (tools.py) and
working offline first: everything is decided and stored in the one SQLite file, and whatever
leaves the box (a confirmation to the customer, a notice or a summary to the owner) goes
through one door (notify.Outbound) that takes its recipients from the conversation and the
configuration only, and limits how much each customer can cause to be sent.

Kept light on purpose: appliance.config_actions imports `settings`, `security` and `calendar`
(pure data and parsing), and nothing here may import the rest at package import time.
"""
