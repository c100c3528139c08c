/*
 * act_check: "Payments to check" for officials (payments.check_view): their
 * chama's M-Pesa payments chamad has not credited, because M-Pesa has not
 * confirmed them to us yet or said otherwise (dom/payment's
 * payment_check_list; the policy is checked in the same statement).
 * Looking changes nothing: crediting is M-Pesa's confirmation's, never an
 * official's.
 */
#include "ussd/act.h"
#include "dom/payment.h"

static void act_money_check_load(struct ussd_hop *hop)
{
	act_list_for(hop, "payments.check_view", &payment_check_list);
}

/* The actions the menus name (menus/60_money_check.json), registered by main.c. */
const struct ussd_action act_check_actions[] = {
	{ "money_check_load", act_money_check_load, ACT_NO_EFFECT | ACT_SHOWN_AGAIN },
	{ NULL, NULL },
};
