/*
 * loan_guar: loan guarantors, as the channels ask for them
 * (schema/72_loan_guarantors.sql holds the rules, the holds and their
 * release; migrations 003, 024 and 026 the columns).
 *
 * The applicant names guarantors by member number or phone and the amount
 * each covers (USSD Loans > My guarantees > Name a guarantor); each
 * guarantor gets an SMS with a code and answers YES/NDIO or NO/HAPANA
 * <code> <PIN> by SMS, or from USSD Loans > Requests for me after seeing
 * the borrower's record and their own free savings; GUAR/DHAMANA <PIN> and
 * Loans > My guarantees say what they guarantee, what is released and what
 * is at risk.  Writes take the audit context first ($1 MSISDN, $2 request
 * id, $3 user, $4 channel: act_audit_params, or the SMS's own).
 */
#ifndef CHAMAD_LOAN_GUAR_H
#define CHAMAD_LOAN_GUAR_H

#include "net/db.h"

/* The requests waiting for the user's answer in the chama, oldest first:
 * $1 user, $2 chama, $3 time zone -> (pledge id, "CODE Borrower KES n"). */
extern const struct db_stmt loan_guar_requests;

/* One request for its guarantor: $1 user, $2 chama, $3 time zone, $4
 * pledge id, $5 p_at -> one row (none when it is not theirs); amounts are
 * formatted KES ("1,500"). */
extern const struct db_stmt loan_guar_request;
enum {
	LOAN_GUAR_R_CODE,
	LOAN_GUAR_R_STATUS,	/* pending | accepted | declined | expired | ... */
	LOAN_GUAR_R_BORROWER,
	LOAN_GUAR_R_AMOUNT,	/* the pledge asked for */
	LOAN_GUAR_R_LOAN,	/* the loan's principal */
	LOAN_GUAR_R_SAVINGS,	/* the borrower's savings */
	LOAN_GUAR_R_REPAID,	/* the borrower's loans repaid (closed) */
	LOAN_GUAR_R_OPEN,	/* ... and open now */
	LOAN_GUAR_R_ARREARS,	/* ... instalments past due, unpaid */
	LOAN_GUAR_R_FREE,	/* the guarantor's own free savings (0 at least) */
};

/* A guarantor's answer: $1..$4 audit, $5 code, $6 'yes' | 'no', $7 p_at ->
 * outcome (ok_loan_guar_accepted, ok_loan_guar_declined,
 * err_loan_guar_no_request, err_loan_guar_answered, err_loan_guar_expired,
 * err_loan_guar_loan_gone, err_loan_guar_not_member, err_loan_guar_short),
 * then the columns below. */
extern const struct db_stmt loan_guar_answer;
enum {
	LOAN_GUAR_A_OUTCOME,
	LOAN_GUAR_A_LOAN,
	LOAN_GUAR_A_ID,
	LOAN_GUAR_A_CODE,
	LOAN_GUAR_A_BORROWER,
	LOAN_GUAR_A_AMOUNT,	/* formatted KES */
	LOAN_GUAR_A_FREE,	/* the guarantor's free savings after it, formatted (0 at least) */
	LOAN_GUAR_A_NEED,	/* the loan's cover still needed, formatted */
};

/* Before asking: $1 user (the applicant), $2 chama, $3 who (a member
 * number, or a phone in E.164) -> outcome (ok_loan_guar_found or a refusal
 * of loan_guar_add below), the guarantor's name, what is still to be asked
 * (formatted KES). */
extern const struct db_stmt loan_guar_find;
enum {
	LOAN_GUAR_F_OUTCOME,
	LOAN_GUAR_F_NAME,
	LOAN_GUAR_F_NEED,
};

/* The applicant asks a member to guarantee part of their applied loan in
 * the chama: $1..$4 audit, $5 chama, $6 who, $7 amount in cents, $8 p_at ->
 * outcome (ok_loan_guar_asked, err_loan_guar_no_loan, err_loan_guar_who,
 * err_loan_guar_self, err_loan_guar_twice, err_loan_guar_max,
 * err_loan_guar_covered, err_loan_guar_over, err_loan_guar_amount), the
 * pledge's code, what is still to be asked (formatted), the name. */
extern const struct db_stmt loan_guar_add;
enum {
	LOAN_GUAR_N_OUTCOME,
	LOAN_GUAR_N_CODE,
	LOAN_GUAR_N_NEED,
	LOAN_GUAR_N_NAME,
};

/* What the user guarantees in the chama: $1 user, $2 chama -> one row:
 * loans, pledged, released, at risk (formatted KES), requests waiting. */
extern const struct db_stmt loan_guar_summary;
enum {
	LOAN_GUAR_S_LOANS,
	LOAN_GUAR_S_PLEDGED,
	LOAN_GUAR_S_RELEASED,
	LOAN_GUAR_S_HELD,
	LOAN_GUAR_S_PENDING,
};

/* GUAR by SMS, every chama of the user: $1 user -> one row per pledge
 * accepted (newest first, at most 5), each with the totals: chama,
 * borrower, pledged, held (formatted), then total pledged, released, held
 * (formatted).  No rows: nothing guaranteed. */
extern const struct db_stmt loan_guar_mine;
enum {
	LOAN_GUAR_M_CHAMA,
	LOAN_GUAR_M_BORROWER,
	LOAN_GUAR_M_PLEDGED,
	LOAN_GUAR_M_HELD,
	LOAN_GUAR_M_TOTAL_PLEDGED,
	LOAN_GUAR_M_TOTAL_RELEASED,
	LOAN_GUAR_M_TOTAL_HELD,
};

/* The job: $1 p_at -> the requests expired (pending past their hours). */
extern const struct db_stmt loan_guar_expire;

#endif
