/*
 * notify: see notify.h.
 */
#include "dom/notify.h"
#include "dom/outbox.h"
#include "base/util.h"

#include <stdarg.h>
#include <stdlib.h>

#include <jansson.h>

/*
 * The writers and what they supply.  Each line names where the message is
 * written, so a translator adding a variable to a template sees at once
 * whether anything fills it (the loader says so too).
 */
const struct menu_sms_need notify_templates[] = {
	/* post_contribution (schema/40_money.sql): chama, amount, receipt
	 * (its external reference; cash has none) */
	{ "sms_cash_receipt", "chama amount" },
	{ "sms_mpesa_receipt", "chama amount receipt" },
	/* suspense_allocate: the M-Pesa receipt the money came with */
	{ "sms_allocated", "chama amount receipt" },
	/* reverse_contribution */
	{ "sms_reversed", "chama amount reason" },
	/* mpesa_settle (schema/50_mpesa.sql), the code's own text if any */
	{ "sms_mpesa_failed", "amount chama desc" },
	{ "sms_mpesa_failed_*", "amount chama desc" },
	/* mpesa_alert (schema/50_mpesa.sql), from mpesa_settle and the c2b
	 * functions: the officials' alert; why is an sms_mpesa_why_* part */
	{ "sms_mpesa_alert_stk", "chama amount member ref why" },
	{ "sms_mpesa_alert_c2b", "chama amount ref why" },
	{ "sms_mpesa_why_*", "" },
	/* mpesa.c: a push that never started */
	{ "sms_mpesa_push_failed", "amount chama" },
	/* payouts (schema/57_payouts.sql): payout_vars for each, the
	 * officials' reason a translated line, the approvers for everyone */
	{ "sms_payout_paid", "chama member amount kind memo receipt" },
	{ "sms_payout_paid_cash", "chama member amount kind memo receipt" },
	{ "sms_payout_failed", "chama member amount kind memo receipt" },
	{ "sms_payout_announce", "chama member amount kind memo receipt approvers" },
	{ "sms_payout_failed_officials", "chama member amount kind memo receipt reason" },
	{ "sms_payout_unknown_officials", "chama member amount kind memo receipt reason" },
	{ "sms_payout_kind_*", "" },
	/* approval_open's request to the officials ({what}: payout_vars less
	 * kind and receipt) */
	{ "sms_approval_what_payout", "chama member amount memo" },
	{ "sms_approval_what_cash_payout", "chama member amount memo" },
	{ "sms_payout_reason_*", "code" },
	/* loans (schema/71_loans.sql): the queue; sms_loan.c: a refusal's line */
	{ "sms_loan_queued", "chama amount loan place" },
	{ "sms_loan_dequeued", "chama amount loan" },
	{ "sms_loanwhy_*", "" },
	/* loans (schema/73_loan_approvals.sql): the officials' words of a
	 * request (approval vars), the borrower's, the guarantors' and the
	 * officials' notices; payout_fail's for a loan is payout_vars + reason */
	{ "sms_approval_what_loan", "member loan term inst guars cover pool past late" },
	{ "sms_approval_what_loan_call", "member loan guars held left" },
	{ "sms_approval_what_loan_write_off", "member loan left" },
	{ "sms_loanoff_active", "chama amount first date count total" },
	{ "sms_loanoff_failed_officials", "chama member amount kind memo receipt reason" },
	{ "sms_loanoff_waiting_officials", "chama member amount reason" },
	{ "sms_loanoff_why_*", "" },
	{ "sms_loanoff_cancelled", "chama amount" },
	{ "sms_loanoff_pledge_called", "chama member amount" },
	{ "sms_loanoff_written_off", "chama amount" },
	/* loan_repay, loan_repayment_reverse (schema/74_loan_repay.sql),
	 * and the words of their approval requests */
	{ "sms_loan_repaid", "chama loan amount penalty fee interest principal credit balance" },
	{ "sms_loan_closed", "chama loan amount penalty fee interest principal credit balance" },
	{ "sms_loan_closed_credit", "chama loan amount penalty fee interest principal credit balance" },
	{ "sms_loan_repay_reversed", "chama loan amount reason balance" },
	{ "sms_loan_offset_refused", "chama loan amount" },
	{ "sms_approval_what_loan_offset", "member loan" },
	{ "sms_approval_what_loan_repay_reverse", "member date loan reason" },
	/* send_reminders (schema/60_notify.sql) */
	{ "sms_due_reminder", "chama amount date" },
	{ "sms_arrears", "chama amount date" },
	/* the loan jobs (schema/75_loan_penalties.sql); pay is one of the
	 * sms_loan_pay_* lines */
	{ "sms_loan_due3", "chama loan amount date pay" },
	{ "sms_loan_due1", "chama loan amount date pay" },
	{ "sms_loan_overdue", "chama loan amount date pay" },
	{ "sms_loan_penalty", "chama loan amount date due pay" },
	{ "sms_loan_defaulted", "chama loan amount date days member pay" },
	{ "sms_loan_defaulted_officials", "chama loan amount date days member" },
	{ "sms_loan_pay_paybill", "paybill account" },
	{ "sms_loan_pay_account", "account" },
	/* act_auth.c: codes; pin.c: the lock-out alert */
	{ "sms_otp", "code minutes" },
	{ "sms_pin_locked", "minutes" },
	/* act_chama.c */
	{ "sms_invite", "chama code" },
	{ "sms_join_approved", "chama" },
	/* sms_cmd.c: replies, the lines they list, and the dispute */
	{ "sms_help", "" },
	{ "sms_unknown", "" },
	{ "sms_signup_hint", "" },
	{ "sms_need_pin", "" },
	{ "sms_pin_wrong", "tries" },
	{ "sms_locked", "until" },
	{ "sms_no_pin", "" },
	{ "sms_busy", "" },
	{ "sms_no_chama", "" },
	{ "sms_no_transactions", "" },
	{ "sms_no_loans", "" },
	{ "sms_bal", "lines" },
	{ "sms_bal_line", "chama savings welfare loan arrears" },
	{ "sms_stmt", "lines" },
	{ "sms_stmt_line", "date what amount chama ref" },
	{ "sms_what_*", "" },
	{ "sms_loan", "lines" },
	{ "sms_loan_line", "chama outstanding next date" },
	{ "sms_dispute_sent", "" },
	{ "sms_dispute_none", "" },
	{ "sms_dispute_officials", "member amount date" },
	/* approvals (schema/85_approvals.sql): the request to the officials,
	 * the kinds' words inside it ({what}), each vote to the maker, the
	 * decision to the maker and (rejected, expired) the beneficiary, the
	 * veto window and the freeze */
	{ "sms_approval_request", "chama maker what amount code" },
	{ "sms_approval_what_payment_reverse", "member date reason notice" },
	{ "sms_approval_voted", "chama code official vote yes need" },
	{ "sms_approval_word_approve", "" },
	{ "sms_approval_word_reject", "" },
	{ "sms_approval_approved", "chama code what amount" },
	{ "sms_approval_rejected", "chama code what amount" },
	{ "sms_approval_expired", "chama code what amount" },
	{ "sms_approval_rejected_for", "chama code what amount" },
	{ "sms_approval_expired_for", "chama code what amount" },
	{ "sms_approval_veto", "chama what amount code hours" },
	{ "sms_approval_waiting", "chama code what amount hours" },
	{ "sms_approval_frozen", "chama code what amount count" },
	/* sms_approve.c: the replies to APPROVE, REJECT and STOP */
	{ "sms_appr_*", "code yes need count" },
	{ "sms_approve_usage", "" },
	{ "sms_stop_usage", "" },
	/* reconcile_compare (schema/95_reconcile.sql), to a chama's officials */
	{ "sms_reconcile_offered", "chama receipt amount date" },
	{ "sms_reconcile_unlisted", "chama receipt amount date" },
	{ "sms_reconcile_duplicated", "chama receipt amount count" },
	/* loan guarantors (schema/72_loan_guarantors.sql): the request to the
	 * guarantor, their answer (or its expiry) to the applicant, the end of
	 * a pledge; sms_loan_guar.c: the replies to YES, NO and GUAR */
	{ "sms_loan_guar_request", "chama borrower amount loan code hours" },
	{ "sms_loan_guar_accepted", "chama guarantor amount need" },
	{ "sms_loan_guar_declined", "chama guarantor amount need" },
	{ "sms_loan_guar_expired", "chama guarantor amount need" },
	{ "sms_loan_guar_withdrawn", "chama borrower code" },
	{ "sms_loan_guar_released", "chama borrower amount" },
	{ "sms_loan_guar_cancelled", "chama borrower amount" },
	{ "sms_lguar_*", "code borrower amount free" },
	{ "sms_guar_answer_usage", "" },
	{ "sms_guar_mine", "pledged released held lines" },
	{ "sms_guar_mine_line", "chama borrower pledged held" },
	{ "sms_guar_none", "" },
	{ NULL, NULL },
};

DB_STMT(dom_notify, 8,
	"SELECT notify_phone($1, $2, $3, $4, $5::jsonb, $6::int, $7, $8::bigint)");

DB_STMT(dom_outbox_rows, 1,
	"SELECT n.id, n.status, n.body, n.template, n.vars, " OUTBOX_LANG " FROM notifications n "
	"WHERE n.id = ANY ($1::bigint[]) ORDER BY n.id");

DB_STMT(dom_send_reminders, 3, "SELECT send_reminders($1::timestamptz, $2, $3::int)");

char *notify_vars(const char *name, ...)
{
	json_t *o = json_object();
	const char *k = name;
	va_list ap;
	char *s;

	va_start(ap, name);
	while (k) {
		const char *v = va_arg(ap, const char *);

		if (v)
			json_object_set_new(o, k, json_string(v));
		k = va_arg(ap, const char *);
	}
	va_end(ap);
	s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s ? s : xstrdup("{}");
}
