"""The dashboard's operator forms. They check shape only; the audited services decide (and
their problems are shown on the form)."""

from __future__ import annotations

from django import forms

from trading.services.control import REASON_CODE_RE

EMERGENCY_CONFIRMATION = "EMERGENCY_EXIT"


class OperatorActionForm(forms.Form):
    reason_code = forms.RegexField(regex=REASON_CODE_RE.pattern, max_length=64,
                                   help_text="UPPER_SNAKE, e.g. MANUAL_HALT",
                                   error_messages={"invalid": "A-Z, 0-9 and _, starting with a letter (MANUAL_HALT)"})
    reason = forms.CharField(max_length=2000, widget=forms.Textarea(attrs={"rows": 2}), help_text="Why, in words.")


class EmergencyExitForm(OperatorActionForm):
    flatten_all = forms.BooleanField(required=False, label="Also sell every other non-quote asset on the venue")
    confirm = forms.CharField(max_length=32, label=f"Type {EMERGENCY_CONFIRMATION} to confirm")

    def clean_confirm(self) -> str:
        value = self.cleaned_data["confirm"]
        if value != EMERGENCY_CONFIRMATION:
            raise forms.ValidationError(f'Type exactly "{EMERGENCY_CONFIRMATION}" to confirm the emergency exit.')
        return value
