"""Every model in Django's admin site, read-mostly where history must not change."""

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.db import DatabaseError, transaction
from django.http import HttpResponseBadRequest

from launchq import models

NUL_IN_QUERY = "A filter or search in this address contains a NUL character (%00), which no value holds."
BAD_FILTER = "A filter in this address asks for a value no field can hold (such as a number too large to store)."


class ReadableFilters(admin.ModelAdmin):
    """A list page whose address carries a filter no database can answer (`?state__exact=%00`, an id of 20
    digits) answers 400 with the reason, not a 500."""

    def changelist_view(self, request, extra_context=None):
        if any("\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists()):
            return HttpResponseBadRequest(NUL_IN_QUERY)
        response = super().changelist_view(request, extra_context)
        if hasattr(response, "render") and not response.is_rendered:
            try:
                with transaction.atomic():  # the query runs while rendering; a refused one must not spoil the rest
                    response.render()
            except (DatabaseError, OverflowError, ValueError):
                return HttpResponseBadRequest(BAD_FILTER)
        return response


# Django's own user and group lists get the same answer.
for _model, _admin in ((User, UserAdmin), (Group, GroupAdmin)):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, type(_admin.__name__, (ReadableFilters, _admin), {}))


class MembershipInline(admin.TabularInline):
    model = models.Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(models.Team)
class TeamAdmin(ReadableFilters):
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]


@admin.register(models.Membership)
class MembershipAdmin(ReadableFilters):
    list_display = ["user", "team", "role"]
    list_filter = ["role", "team"]


@admin.register(models.Project)
class ProjectAdmin(ReadableFilters):
    list_display = ["name", "team", "created_at"]
    list_filter = ["team"]


@admin.register(models.Queue)
class QueueAdmin(ReadableFilters):
    list_display = ["name", "team", "resource", "current_version", "created_at"]
    list_filter = ["team", "resource"]
    readonly_fields = ["current_version", "created_at"]


@admin.register(models.ConfigVersion)
class ConfigVersionAdmin(ReadableFilters):
    """Versions are history: shown, never edited."""

    list_display = ["queue", "number", "format", "created_by", "created_at"]
    list_filter = ["queue__team"]

    def has_change_permission(self, request, obj=None):
        return False

    def has_add_permission(self, request):
        return False


class RunEventInline(admin.TabularInline):
    model = models.RunEvent
    extra = 0
    can_delete = False
    readonly_fields = ["state", "message", "at", "actor", "agent"]


@admin.register(models.Run)
class RunAdmin(ReadableFilters):
    list_display = ["run_id", "name", "queue", "state", "priority", "launched_by", "created_at"]
    list_filter = ["state", "queue__team", "queue"]
    search_fields = ["run_id", "name"]
    readonly_fields = [f.name for f in models.Run._meta.fields]
    inlines = [RunEventInline]


@admin.register(models.RunEvent)
class RunEventAdmin(ReadableFilters):
    list_display = ["run", "state", "at", "actor", "agent"]


@admin.register(models.ApiToken)
class ApiTokenAdmin(ReadableFilters):
    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "digest", "created_at", "last_used_at"]


@admin.register(models.Agent)
class AgentAdmin(ReadableFilters):
    list_display = ["name", "team", "client", "last_seen_at", "reported_status", "revoked_at"]
    readonly_fields = ["prefix", "digest", "created_at", "last_seen_at"]
    filter_horizontal = ["queues"]


@admin.register(models.IdempotencyKey)
class IdempotencyKeyAdmin(admin.ModelAdmin):
    """Shown to look into a replayed launch; deleting one lets its key launch again."""

    list_display = ["key", "user", "run", "created_at", "expires_at"]
    search_fields = ["key", "run__run_id"]
    readonly_fields = ["user", "key", "fingerprint", "run", "created_at", "expires_at"]

    def has_add_permission(self, request):
        return False


@admin.register(models.RunFile)
class RunFileAdmin(admin.ModelAdmin):
    list_display = ["run", "name", "size", "uploaded_at"]
    readonly_fields = ["run", "name", "size", "uploaded_at"]
    exclude = ["content"]
