"""Meta's WhatsApp error codes, explained to the agent (pt-BR and en), with a retry class each.

Keyed on ``code`` only: Meta says titles will be deprecated and copies of its table disagree on
HTTP statuses (see the fixtures' ERRORS.md). Unknown codes fall back to Meta's own title and
details, so the agent always sees *something* specific rather than "error".

Retry classes: T transient (retried automatically with backoff), D retry only after >= 24 h
(never automatically), P permanent for this message (the agent must change something),
C channel/account problem (admins get a channel alert; the agent sees it on the bubble too).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "CATALOG",
    "NOT_SENT_CODE",
    "UNKNOWN_OUTCOME",
    "WINDOW_CLOSED_CODE",
    "ErrorEntry",
    "RetryClass",
    "Text",
    "backoff_seconds",
    "explain",
    "lookup",
    "retry_class",
]


class RetryClass(StrEnum):
    TRANSIENT = "T"
    DELAYED = "D"
    PERMANENT = "P"
    CHANNEL = "C"


@dataclass(frozen=True, slots=True)
class Text:
    title: str
    explanation: str
    action: str

    def as_dict(self) -> dict[str, str]:
        return {"title": self.title, "explanation": self.explanation, "action": self.action}


@dataclass(frozen=True, slots=True)
class ErrorEntry:
    codes: tuple[int, ...]
    retry: RetryClass
    meta_title: str
    pt_br: Text
    en: Text
    max_retries: int = 0  # automatic retries for T codes
    backoff: str = "exp"  # "exp": 1, 2, 4 s ...; "pow4": 4, 16, 64 s (Meta's advice for 131056)


T, D, P, C = RetryClass.TRANSIENT, RetryClass.DELAYED, RetryClass.PERMANENT, RetryClass.CHANNEL

_ADMIN_PT = (
    "Avise o administrador do canal; enquanto não for resolvido, nenhuma mensagem sai por este número."
)
_ADMIN_EN = "Tell the channel administrator; until it is fixed no message can be sent from this number."
_RETRY_LATER_PT = "O sistema já tentou reenviar automaticamente. Tente de novo em alguns minutos."
_RETRY_LATER_EN = "The system already retried automatically. Try again in a few minutes."

_ENTRIES: tuple[ErrorEntry, ...] = (
    ErrorEntry(
        (130472,),
        P,
        "User's number is part of an experiment",
        Text(
            "Cliente em experimento da Meta",
            "A Meta está retendo templates de marketing para este cliente (experimento de mensagens de "
            "marketing). Reenviar dá o mesmo erro; a mensagem não é cobrada.",
            "Não reenvie o template de marketing. Use um template de utilidade ou aguarde o cliente "
            "escrever: "
            "com a janela de atendimento aberta a mensagem é entregue.",
        ),
        Text(
            "Customer is in a Meta experiment",
            "Meta is holding back marketing templates for this customer (marketing message experiment). "
            "Resending gives the same error; the message is not billed.",
            "Don't resend the marketing template. Use a utility template or wait for the customer to write: "
            "with the service window open the message is delivered.",
        ),
    ),
    ErrorEntry(
        (131047, 470),
        P,
        "Re-engagement message",
        Text(
            "Sessão de conversa não iniciada: janela de 24 horas fechada",
            "Passaram mais de 24 horas desde a última mensagem do cliente, então a Meta só aceita templates "
            "aprovados; texto livre é recusado.",
            "Envie um template aprovado. Quando o cliente responder, a janela reabre e você pode "
            "usar texto livre.",
        ),
        Text(
            "Conversation session not open: the 24-hour window is closed",
            "More than 24 hours have passed since the customer's last message, so Meta only accepts approved "
            "templates; free text is refused.",
            "Send an approved template. When the customer replies the window reopens and free text "
            "works again.",
        ),
    ),
    ErrorEntry(
        (472,),
        P,
        "User's number is part of an experiment (on-premises)",
        Text(
            "Cliente em experimento da Meta",
            "Código antigo (API on-premises) para o experimento de marketing da Meta: templates de marketing "
            "são retidos para este cliente.",
            "Não reenvie o template de marketing; use um template de utilidade ou espere o cliente escrever.",
        ),
        Text(
            "Customer is in a Meta experiment",
            "Old (on-premises API) code for Meta's marketing experiment: marketing templates are "
            "held back for "
            "this customer.",
            "Don't resend the marketing template; use a utility template or wait for the customer to write.",
        ),
    ),
    ErrorEntry(
        (131026,),
        P,
        "Message undeliverable",
        Text(
            "Mensagem não entregável",
            "O número pode não ter WhatsApp, o cliente não aceitou os termos mais recentes, usa um "
            "aplicativo "
            "desatualizado, ou a Meta reteve a mensagem para proteger a experiência do usuário.",
            "Confirme o número com o cliente por outro canal; não insista reenviando.",
        ),
        Text(
            "Message undeliverable",
            "The number may not be on WhatsApp, the customer has not accepted the latest terms, uses an "
            "outdated app, or Meta withheld the message to protect the user experience.",
            "Confirm the number with the customer through another channel; don't keep resending.",
        ),
    ),
    ErrorEntry(
        (131049,),
        D,
        "This message was not delivered to maintain healthy ecosystem engagement",
        Text(
            "Limite de marketing por cliente",
            "A Meta não entregou este marketing para manter o engajamento saudável: o cliente recebeu "
            "mensagens de marketing demais recentemente. Reenvios seguidos pioram a situação.",
            "Não reenvie agora. Espere pelo menos 24 horas ou fale com o cliente quando ele escrever.",
        ),
        Text(
            "Per-customer marketing limit",
            "Meta did not deliver this marketing message to keep engagement healthy: the customer "
            "got too many "
            "marketing messages recently. Repeated resends make it worse.",
            "Don't resend now. Wait at least 24 hours, or talk to the customer when they write.",
        ),
    ),
    ErrorEntry(
        (131050,),
        P,
        "User stopped marketing messages",
        Text(
            "Cliente bloqueou mensagens de marketing",
            "O cliente optou por não receber marketing desta empresa.",
            "Não reenvie marketing. Só responda se o cliente entrar em contato.",
        ),
        Text(
            "Customer stopped marketing messages",
            "The customer opted out of marketing messages from this business.",
            "Don't send marketing again. Only reply if the customer gets in touch.",
        ),
    ),
    ErrorEntry(
        (131051,),
        P,
        "Unsupported message type",
        Text(
            "Tipo de mensagem não suportado",
            "O tipo de mensagem enviado (ou recebido do cliente) não é suportado pelo WhatsApp.",
            "Envie como texto ou outro tipo suportado; se veio do cliente, peça que envie de outra forma.",
        ),
        Text(
            "Unsupported message type",
            "The message type sent (or received from the customer) is not supported by WhatsApp.",
            "Send it as text or another supported type; if it came from the customer, ask them to resend it "
            "another way.",
        ),
    ),
    ErrorEntry(
        (131052,),
        P,
        "Media download error",
        Text(
            "Erro ao baixar mídia do cliente",
            "A Meta não conseguiu baixar a mídia que o cliente enviou.",
            "Peça ao cliente que envie o arquivo novamente.",
        ),
        Text(
            "Customer media download error",
            "Meta could not download the media the customer sent.",
            "Ask the customer to send the file again.",
        ),
    ),
    ErrorEntry(
        (131053,),
        P,
        "Media upload error",
        Text(
            "Erro ao enviar mídia",
            "A mídia não pôde ser enviada (tipo, tamanho ou endereço inválido); veja os detalhes.",
            "Confira o formato e o tamanho do arquivo e envie outro.",
        ),
        Text(
            "Media upload error",
            "The media could not be uploaded (type, size or URL); see the details.",
            "Check the file type and size and send another file.",
        ),
    ),
    ErrorEntry(
        (131056,),
        T,
        "(Business, Consumer) pair rate limit hit",
        Text(
            "Mensagens demais para este cliente",
            "Foram enviadas mensagens demais para o mesmo cliente em pouco tempo (cerca de 1 a cada 6 s).",
            "O sistema reenvia sozinho com espera crescente. Se aparecer aqui, espere um minuto e "
            "tente de novo.",
        ),
        Text(
            "Too many messages to this customer",
            "Too many messages were sent to the same customer in a short time (about 1 every 6 s).",
            "The system resends by itself with growing waits. If you see this, wait a minute and try again.",
        ),
        max_retries=3,
        backoff="pow4",
    ),
    ErrorEntry(
        (130429,),
        T,
        "Rate limit hit",
        Text(
            "Limite de envio do número atingido",
            "O número da empresa atingiu o limite de mensagens por segundo.",
            _RETRY_LATER_PT,
        ),
        Text(
            "Phone number throughput limit reached",
            "The business number reached its messages-per-second limit.",
            _RETRY_LATER_EN,
        ),
        max_retries=4,
    ),
    ErrorEntry(
        (4, 80007),
        T,
        "API too many calls / rate limit issues",
        Text(
            "Limite de chamadas da API atingido",
            "O aplicativo ou a conta WhatsApp Business atingiu o limite de chamadas à API da Meta.",
            _RETRY_LATER_PT,
        ),
        Text(
            "API call limit reached",
            "The app or the WhatsApp Business account reached Meta's API call limit.",
            _RETRY_LATER_EN,
        ),
        max_retries=4,
    ),
    ErrorEntry(
        (131048,),
        C,
        "Spam rate limit hit",
        Text(
            "Número restrito por qualidade (spam)",
            "A Meta restringiu o número por baixa qualidade: muitos clientes bloquearam ou denunciaram.",
            "Não reenvie. " + _ADMIN_PT,
        ),
        Text(
            "Number restricted for quality (spam)",
            "Meta restricted the number for low quality: many customers blocked or reported it.",
            "Don't resend. " + _ADMIN_EN,
        ),
    ),
    ErrorEntry(
        (131031,),
        C,
        "Account has been locked",
        Text(
            "Conta bloqueada pela Meta",
            "A conta foi bloqueada por violação de política ou divergência de dados.",
            _ADMIN_PT,
        ),
        Text(
            "Account locked by Meta",
            "The account was locked for a policy violation or data mismatch.",
            _ADMIN_EN,
        ),
    ),
    ErrorEntry(
        (368,),
        C,
        "Temporarily blocked for policies violations",
        Text(
            "Conta temporariamente bloqueada",
            "A Meta restringiu a conta temporariamente por violação de políticas.",
            _ADMIN_PT,
        ),
        Text(
            "Account temporarily blocked",
            "Meta temporarily restricted the account for policy violations.",
            _ADMIN_EN,
        ),
    ),
    ErrorEntry(
        (131042,),
        C,
        "Business eligibility payment issue",
        Text(
            "Problema de pagamento da conta",
            "A forma de pagamento da conta WhatsApp Business não está configurada ou o limite foi excedido.",
            _ADMIN_PT,
        ),
        Text(
            "Account payment problem",
            "The WhatsApp Business account's payment method is not set up or is over its limit.",
            _ADMIN_EN,
        ),
    ),
    ErrorEntry(
        (131045,),
        C,
        "Incorrect certificate",
        Text(
            "Certificado do número incorreto", "Erro no registro do número de telefone da empresa.", _ADMIN_PT
        ),
        Text("Incorrect number certificate", "The business phone number's registration is wrong.", _ADMIN_EN),
    ),
    ErrorEntry(
        (133010,),
        C,
        "Phone number not registered",
        Text(
            "Número não registrado",
            "O número da empresa não está registrado na Cloud API.",
            _ADMIN_PT,
        ),
        Text(
            "Phone number not registered",
            "The business number is not registered on the Cloud API.",
            _ADMIN_EN,
        ),
    ),
    ErrorEntry(
        (190,),
        C,
        "Access token has expired",
        Text(
            "Token de acesso expirado",
            "O token de acesso à API da Meta expirou ou é inválido; a mensagem não foi aceita.",
            _ADMIN_PT,
        ),
        Text(
            "Access token expired",
            "The Meta API access token expired or is invalid; the message was not accepted.",
            _ADMIN_EN,
        ),
    ),
    ErrorEntry(
        (0, 3, 10, *range(200, 300)),
        C,
        "Authentication / permission error",
        Text(
            "Erro de autenticação ou permissão",
            "O token não tem as permissões necessárias ou a autenticação falhou.",
            _ADMIN_PT,
        ),
        Text(
            "Authentication or permission error",
            "The token lacks the required permissions or authentication failed.",
            _ADMIN_EN,
        ),
    ),
    ErrorEntry(
        (131016, 133004, 2),
        T,
        "Service unavailable",
        Text(
            "Serviço da Meta indisponível",
            "Indisponibilidade temporária na Meta.",
            _RETRY_LATER_PT,
        ),
        Text("Meta service unavailable", "Temporary outage at Meta.", _RETRY_LATER_EN),
        max_retries=3,
    ),
    ErrorEntry(
        (131057,),
        T,
        "Account in maintenance mode",
        Text(
            "Conta em manutenção",
            "A conta está em modo de manutenção (por exemplo, durante um aumento de capacidade).",
            _RETRY_LATER_PT,
        ),
        Text(
            "Account in maintenance mode",
            "The account is in maintenance mode (e.g. during a throughput upgrade).",
            _RETRY_LATER_EN,
        ),
        max_retries=3,
    ),
    ErrorEntry(
        (131000,),
        T,
        "Something went wrong",
        Text(
            "Erro desconhecido na Meta",
            "A Meta retornou um erro genérico; o sistema tentou de novo algumas vezes.",
            "Tente novamente mais tarde. Se continuar, passe ao administrador o código e o fbtrace_id.",
        ),
        Text(
            "Unknown error at Meta",
            "Meta returned a generic error; the system retried a few times.",
            "Try again later. If it keeps happening, give the administrator the code and the fbtrace_id.",
        ),
        max_retries=2,
    ),
    ErrorEntry(
        (100,),
        P,
        "Invalid parameter",
        Text(
            "Parâmetro inválido",
            "A requisição à Meta tinha um parâmetro inválido.",
            "Revise o conteúdo da mensagem; se parecer correto, avise o administrador com o código.",
        ),
        Text(
            "Invalid parameter",
            "The request to Meta had an invalid parameter.",
            "Check the message content; if it looks right, tell the administrator the code.",
        ),
    ),
    ErrorEntry(
        (131008, 131009),
        P,
        "Required parameter missing / Parameter value is not valid",
        Text(
            "Parâmetro ausente ou inválido",
            "Falta um parâmetro obrigatório ou um valor não é válido; veja os detalhes.",
            "Corrija a mensagem (ou as variáveis do template) e envie de novo.",
        ),
        Text(
            "Missing or invalid parameter",
            "A required parameter is missing or a value is not valid; see the details.",
            "Fix the message (or the template variables) and send it again.",
        ),
    ),
    ErrorEntry(
        (131021,),
        P,
        "Recipient cannot be sender",
        Text(
            "Destinatário igual ao remetente",
            "A mensagem foi endereçada ao próprio número da empresa.",
            "Confira o número do cliente.",
        ),
        Text(
            "Recipient cannot be sender",
            "The message was addressed to the business's own number.",
            "Check the customer's number.",
        ),
    ),
    ErrorEntry(
        (132000,),
        P,
        "Number of parameters does not match the expected number of params",
        Text(
            "Quantidade de variáveis do template não confere",
            "O número de variáveis enviadas é diferente do que o template aprovado espera.",
            "Preencha exatamente as variáveis do template e envie de novo.",
        ),
        Text(
            "Template variable count mismatch",
            "The number of variables sent differs from what the approved template expects.",
            "Fill in exactly the template's variables and send again.",
        ),
    ),
    ErrorEntry(
        (132001,),
        P,
        "Template name does not exist in the translation",
        Text(
            "Template não encontrado neste idioma",
            "O template (ou o idioma escolhido) não existe ou não está aprovado.",
            "Escolha um template aprovado no idioma do cliente ou peça ao administrador para aprová-lo.",
        ),
        Text(
            "Template not found in this language",
            "The template (or the chosen language) does not exist or is not approved.",
            "Pick an approved template in the customer's language, or ask the administrator to get "
            "it approved.",
        ),
    ),
    ErrorEntry(
        (132005,),
        P,
        "Translated text too long",
        Text(
            "Texto do template longo demais",
            "Com as variáveis preenchidas, o texto do template ficou longo demais.",
            "Use variáveis mais curtas.",
        ),
        Text(
            "Template text too long",
            "With the variables filled in, the template text is too long.",
            "Use shorter variables.",
        ),
    ),
    ErrorEntry(
        (132007,),
        P,
        "Template Format Character Policy Violated",
        Text(
            "Formato do template viola a política",
            "O conteúdo do template viola a política de caracteres/formatação da Meta.",
            "Revise as variáveis (quebras de linha, tabulações, espaços repetidos) e envie de novo.",
        ),
        Text(
            "Template format policy violated",
            "The template content violates Meta's character/format policy.",
            "Check the variables (newlines, tabs, repeated spaces) and send again.",
        ),
    ),
    ErrorEntry(
        (132012,),
        P,
        "Parameter format does not match format in the created template",
        Text(
            "Formato de variável não confere com o template",
            "Uma variável não tem o formato definido no template aprovado.",
            "Corrija o formato das variáveis e envie de novo.",
        ),
        Text(
            "Variable format does not match the template",
            "A variable does not have the format defined in the approved template.",
            "Fix the variables' format and send again.",
        ),
    ),
    ErrorEntry(
        (132015,),
        P,
        "Template is Paused",
        Text(
            "Template pausado por baixa qualidade",
            "A Meta pausou este template por baixa qualidade; ele não pode ser enviado agora.",
            "Use outro template. O administrador precisa editar este e obter nova aprovação.",
        ),
        Text(
            "Template paused for low quality",
            "Meta paused this template for low quality; it cannot be sent now.",
            "Use another template. The administrator must edit this one and get it re-approved.",
        ),
    ),
    ErrorEntry(
        (132016,),
        P,
        "Template is Disabled",
        Text(
            "Template desativado",
            "A Meta desativou este template permanentemente.",
            "Use outro template; este não pode mais ser usado.",
        ),
        Text(
            "Template disabled",
            "Meta permanently disabled this template.",
            "Use another template; this one can no longer be used.",
        ),
    ),
    ErrorEntry(
        (135000,),
        P,
        "Generic user error",
        Text(
            "Erro genérico na mensagem",
            "A Meta recusou a mensagem com um erro genérico.",
            "Revise a mensagem e tente de novo; se persistir, avise o administrador com o código e o "
            "fbtrace_id.",
        ),
        Text(
            "Generic message error",
            "Meta refused the message with a generic error.",
            "Check the message and try again; if it persists, tell the administrator the code and "
            "fbtrace_id.",
        ),
    ),
)

NOT_SENT_CODE = -1
"""The sidecar's own code (Meta's are positive): Meta could not be reached and the request never
left (connection refused or reset while connecting, DNS, TLS, connect timeout). Retried like
Meta's transient codes; when the retries run out the message is ``failed``, certainly not sent."""

_NOT_SENT = ErrorEntry(
    (NOT_SENT_CODE,),
    T,
    "Meta unreachable: not sent",
    Text(
        "Meta inacessível: mensagem não enviada",
        "Não foi possível conectar à Meta (rede ou serviço fora do ar); o pedido nem chegou a sair, então a "
        "mensagem certamente não foi enviada. O sistema tentou de novo algumas vezes.",
        "Reenvie a mensagem daqui a alguns minutos (não há risco de duplicar). Se continuar, avise o "
        "administrador: o servidor não alcança graph.facebook.com.",
    ),
    Text(
        "Meta unreachable: not sent",
        "Meta could not be reached (network or service down); the request never left, so the message "
        "was certainly not sent. The system retried a few times.",
        "Resend the message in a few minutes (no risk of a duplicate). If it keeps happening, tell the "
        "administrator: the server cannot reach graph.facebook.com.",
    ),
    max_retries=3,
)

CATALOG: dict[int, ErrorEntry] = {code: entry for entry in (*_ENTRIES, _NOT_SENT) for code in entry.codes}

WINDOW_CLOSED_CODE = 131047

UNKNOWN_OUTCOME = {
    "pt_BR": Text(
        "Resultado do envio desconhecido",
        "O pedido chegou a sair para a Meta, mas a resposta não veio (tempo esgotado ou conexão caída no "
        "meio): a mensagem pode ou não ter sido aceita. O sistema não reenvia sozinho para não duplicar.",
        "Aguarde alguns minutos: se o status mudar para enviado ou entregue, está tudo certo. Se continuar "
        "desconhecido, reenvie você mesmo (o cliente pode receber duas vezes) ou pergunte se recebeu.",
    ),
    "en": Text(
        "Send outcome unknown",
        "The request reached Meta but no answer came back (timeout or connection lost mid-way): the "
        "message may or may not have been accepted. The system does not resend it, to avoid duplicates.",
        "Wait a few minutes: if the status changes to sent or delivered, all is well. If it stays unknown, "
        "resend it yourself (the customer may get it twice) or ask the customer whether it arrived.",
    ),
}


def lookup(code: int | None) -> ErrorEntry | None:
    return CATALOG.get(code) if code is not None else None


def retry_class(code: int | None) -> RetryClass:
    """Unknown codes are permanent for the message: the agent decides, nothing is resent blindly."""
    entry = lookup(code)
    return entry.retry if entry else P


def backoff_seconds(code: int | None, attempt: int) -> float | None:
    """Seconds to wait before automatic retry number ``attempt`` (1-based), or None: no more retries."""
    entry = lookup(code)
    if entry is None or entry.retry is not T or attempt > entry.max_retries:
        return None
    if entry.backoff == "pow4":
        return float(4**attempt)
    return float(2 ** (attempt - 1))


def explain(
    code: int | None,
    title: str | None = None,
    message: str | None = None,
    details: str | None = None,
) -> dict[str, Any]:
    """What the agent sees on a failed message: title, explanation and next action per language."""
    entry = lookup(code)
    if entry is not None:
        texts = {"pt_BR": entry.pt_br.as_dict(), "en": entry.en.as_dict()}
        known = True
        cls = entry.retry
    else:
        known = False
        cls = P
        meta_title = title or message or (f"Meta error {code}" if code is not None else "Meta error")
        meta_text = details or message or title or ""
        texts = {
            "pt_BR": {
                "title": meta_title,
                "explanation": f"A Meta recusou a mensagem (código {code}). Detalhes da Meta: {meta_text}",
                "action": "Revise a mensagem; se não souber o que fazer, avise o administrador com o código "
                "e o fbtrace_id.",
            },
            "en": {
                "title": meta_title,
                "explanation": f"Meta refused the message (code {code}). Meta's details: {meta_text}",
                "action": "Check the message; if unsure what to do, tell the administrator the code and the "
                "fbtrace_id.",
            },
        }
    return {"code": code, "retry_class": cls.value, "known": known, **texts}
